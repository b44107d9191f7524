"""``leash report DIR [--out OUT]``: aggregate every run under DIR into one table and figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leash.report.plots import plot_costs, plot_frontier, points_above_frontier
from leash.report.runs import FINISHED, load_runs
from leash.report.seeds import (
    SEEDS_TITLE,
    methods_csv,
    methods_json,
    methods_markdown,
    methods_over_seeds,
    methods_rich,
)
from leash.report.table import to_rich, write_reports

EXIT_NO_RUNS = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leash report",
        description="Aggregate the runs under DIR (a multirun included) into a comparison "
        "table (report.md, results.csv, results.json) and figures (frontier.png, cost.png).",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder to search for runs")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    return parser


def _fitting_console(console: Console, table: Table) -> Console:
    """A console as wide as the table's natural width: rich would otherwise crop columns and
    cut numbers to fit a narrow terminal (which soft-wraps instead) or a log file's 80 columns."""
    width = console.measure(table, options=console.options.update_width(10_000)).maximum
    return console if width <= console.width else Console(width=width)


def main(argv: list[str]) -> int:
    """Print the comparison table of the runs under DIR and write the report; 0 if any run was
    found (failed ones included), 2 if none."""
    args = _parser().parse_args(argv)
    console = Console()
    if not args.dir.is_dir():
        print(f"leash report: {args.dir} is not a directory", file=sys.stderr)
        return EXIT_NO_RUNS
    runs = load_runs(args.dir)
    if not runs:
        print(
            f"leash report: no runs under {args.dir} (a run folder holds .hydra/config.yaml)",
            file=sys.stderr,
        )
        return EXIT_NO_RUNS
    out = args.out or args.dir
    out.mkdir(parents=True, exist_ok=True)
    figures = [plot_frontier(runs, out / "frontier.png"), plot_costs(runs, out / "cost.png")]
    figures = [figure for figure in figures if figure is not None]
    notes = [figure.source for figure in figures]
    above = points_above_frontier(runs)
    if above:
        names = ", ".join(run.name for run in above)
        notes.append(f"**above the optimal frontier (a bug in training or evaluation)**: {names}")
    finished = sum(run.status == FINISHED for run in runs)
    title = f"{len(runs)} runs under {args.dir} ({finished} finished)"
    table = to_rich(runs, title=title)
    console = _fitting_console(console, table)
    console.print(table)
    if above:
        console.print(f"[bold red]warning:[/] above the optimal frontier: {escape(names)}")
    methods = methods_over_seeds(runs)
    sections, extra = {}, {}
    if methods:
        console.print(methods_rich(methods))
        sections[SEEDS_TITLE] = methods_markdown(methods)
        extra = {"results_by_method.csv": methods_csv(methods),
                 "results_by_method.json": json.dumps(methods_json(methods), indent=2)}
    written = write_reports(runs, args.dir, out, notes, sections, extra)
    for path in written + [figure.path for figure in figures]:
        console.print(f"wrote {path}", markup=False)
    return 0
