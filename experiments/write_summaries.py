"""Rewrite every generated block and every cited table of README.md and experiments/README.md
from the committed results.

A block runs from ``<!-- generated: NAME -->`` to ``<!-- /generated -->``; its text is what
``summary()`` of ``experiments/NAME.py`` (or ``benchmarks/NAME.py``) writes from that script's
committed results. A table under ``<!-- results: PATH -->`` keeps its rows, columns and
digits, and takes each figure from that CSV: a cell shown as ``X`` from column ``X``, one shown
as ``m ± h`` from ``X mean`` and ``X ci95`` (``tests/test_readme_figures.py`` fails while a block
or a cell differs). Run it after committing new results:

    python experiments/write_summaries.py
"""

from __future__ import annotations

import csv
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


NUMBER = re.compile(r"-?\d+(\.\d*)?([eE][-+]?\d+)?")
"""A CSV cell that holds a number."""
CITED_TABLE = re.compile(r"^<!-- results: (\S+) -->\n((?:\|.*\n)+)", re.M)
"""A results marker and the markdown table right under it."""


def _refreshed_cell(shown: str, header: str, row: dict[str, str]) -> str:
    """A cell with its figures taken from the CSV row, at the digits it shows (a blank cell
    the CSV now fills gets three decimals; a figure the CSV no longer has becomes blank)."""
    if header in row and row[header] and not NUMBER.fullmatch(row[header]):
        return row[header]  # text (a name, a count like 45/60): shown as the CSV holds it
    if shown == "":
        spread = f"{header} mean" in row and header not in row
        if not spread and not NUMBER.fullmatch(row.get(header, "") or "x"):
            return ""  # a text column, or nothing to show
        shown = "0.000 ± 0.000" if spread else "0.000"
    parts = [part.strip() for part in shown.split("±")]
    columns = [header] if len(parts) == 1 and header in row else [
        f"{header} mean", f"{header} ci95"][:len(parts)]
    figures = []
    for part, column in zip(parts, columns, strict=True):
        digits = re.fullmatch(r"-?\d+(?:\.(\d+))?", part)
        if digits is not None and not NUMBER.fullmatch(row.get(column, "") or "0"):
            return shown  # the CSV holds text there
        if digits is None:
            return shown
        if row.get(column, "") == "":
            return ""
        figures.append(format(float(row[column]), f".{len(digits.group(1) or '')}f"))
    return " ± ".join(figures)


def refresh_table(table: str, results: Path) -> str:
    """The markdown table with every figure re-read from ``results`` (first column: the key)."""
    with results.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    key = next(iter(rows[0]))
    by_key = {row[key]: row for row in rows}
    lines = table.splitlines()
    header = [cell.strip() for cell in lines[0].strip().strip("|").split("|")]
    out = lines[:2]
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        row = by_key.get(cells[0], {})
        cells = cells[:1] + [_refreshed_cell(c, h, row) if row else c
                             for h, c in zip(header[1:], cells[1:], strict=True)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def refresh_tables(text: str, folder: Path) -> str:
    """Every cited table of a README's text refreshed from its results file."""
    return CITED_TABLE.sub(
        lambda m: m.group(0).replace(m.group(2), refresh_table(m.group(2), folder / m.group(1))),
        text,
    )


def main() -> None:
    for readme in READMES:
        text = readme.read_text()
        new = BLOCK.sub(lambda m: m.group(1) + block_text(m.group(2)) + m.group(4), text)
        new = refresh_tables(new, readme.parent)
        if new != text:
            readme.write_text(new)
        print(f"{readme}: {'rewritten' if new != text else 'up to date'}")


if __name__ == "__main__":
    main()
