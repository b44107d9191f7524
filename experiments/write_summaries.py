"""Rewrite every generated block of README.md and experiments/README.md from the results.

A block runs from ``<!-- generated: NAME -->`` to ``<!-- /generated -->``; its text is what
``summary()`` of ``experiments/NAME.py`` (or ``benchmarks/NAME.py``) writes from that script's
committed results
(``tests/test_readme_figures.py`` fails while a block differs). Run it after committing new
results:

    python experiments/write_summaries.py
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent
READMES = [EXPERIMENTS.parent / "README.md", EXPERIMENTS / "README.md"]
SCRIPT_FOLDERS = [EXPERIMENTS, EXPERIMENTS.parent / "benchmarks"]
BLOCK = re.compile(r"^(<!-- generated: (\w+) -->\n)(.*?)(^<!-- /generated -->)$", re.S | re.M)
"""A block: its opening line, the script's name, its text (each line ending in a newline), and
its closing line."""


def load_script(name: str):
    """The script ``<name>.py`` of experiments/ (or benchmarks/), imported as a module."""
    path = next(f / f"{name}.py" for f in SCRIPT_FOLDERS if (f / f"{name}.py").is_file())
    if str(path.parent) not in sys.path:  # the script imports its siblings (run_pool, ...)
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    script = importlib.util.module_from_spec(spec)
    sys.modules[name] = script  # dataclasses look their module up while the class is built
    spec.loader.exec_module(script)
    return script


def summary_of(name: str) -> str:
    """What ``summary()`` of the script ``<name>.py`` writes from its committed results."""
    return load_script(name).summary()


def block_text(name: str) -> str:
    """The text a block of ``name`` holds: its summary, ending in a newline."""
    return summary_of(name).rstrip("\n") + "\n"


def main() -> None:
    for readme in READMES:
        text = readme.read_text()
        new = BLOCK.sub(lambda m: m.group(1) + block_text(m.group(2)) + m.group(4), text)
        if new != text:
            readme.write_text(new)
        print(f"{readme}: {'rewritten' if new != text else 'up to date'}")


if __name__ == "__main__":
    main()
