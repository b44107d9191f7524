"""The support matrix of the README's "Scaling out", rendered from the code that enforces it.

    python experiments/write_summaries.py    # rewrites the `support_matrix` block

Nothing is measured: ``summary()`` is :func:`leash.config.support.render_matrix`, the same rules
:func:`leash.config.support.check_support` applies to every `leash train` config before it
loads anything, so the table cannot drift from what leash accepts.
"""

from __future__ import annotations

from leash.config.support import render_matrix


def summary() -> str:
    """The matrix as a markdown table, with the reason of every rejected cell."""
    return render_matrix()


if __name__ == "__main__":
    print(summary(), end="")
