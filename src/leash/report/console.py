"""The comparison table as the console shows it: the columns that matter most, in 100 columns.

Files keep every column (report.md, report.html, results.csv); the console keeps, by
:data:`PRIORITY`, as many as fit in :data:`CONSOLE_WIDTH` characters and names the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

CONSOLE_WIDTH = 100

PRIORITY = (
    "method", "seeds", "status", "gold reward", "exact KL", "frontier gap", "RM score",
    "judge score", "win rate", "sample KL", "pref. accuracy", "peak memory", "tokens/s",
    "wall time",
)
"""Column names by how much the console wants them; a column not named here comes last."""


def width_of(table: Table) -> int:
    """The table's natural width in characters, however narrow the terminal."""
    console = Console(width=10_000)
    return console.measure(table, options=console.options).maximum


def fit_table(
    build: Callable[[Sequence[str]], Table], names: Sequence[str], width: int = CONSOLE_WIDTH
) -> tuple[Table, list[str]]:
    """The widest table ``build(kept)`` that fits ``width``, keeping columns by priority (in
    their own order), and the names left out. The first two by priority always stay."""
    ranked = sorted(names, key=lambda n: PRIORITY.index(n) if n in PRIORITY else len(PRIORITY))
    for count in range(len(ranked), 1, -1):
        kept = [name for name in names if name in ranked[:count]]
        table = build(kept)
        if width_of(table) <= width:
            break
    return table, [name for name in names if name not in kept]
