"""``python -m leash`` is the ``leash`` command."""

from leash.cli import main

if __name__ == "__main__":
    main()
