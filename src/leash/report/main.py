"""``leash report DIR [--out OUT]``: aggregate every run under DIR into one table and figures."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from leash.atomic import write_text_atomic
from leash.report.console import CONSOLE_WIDTH, fit_table
from leash.report.curves import plot_curves
from leash.report.html import to_html
from leash.report.plots import PlotFile, plot_costs, plot_frontier, points_above_frontier
from leash.report.runs import FINISHED, RunRecord, load_runs
from leash.report.seeds import (
    SEEDS_TITLE,
    Method,
    method_cells,
    methods_csv,
    methods_json,
    methods_markdown,
    methods_over_seeds,
    methods_rich,
)
from leash.report.table import shown_columns, to_rich, write_reports

EXIT_NO_RUNS = 2
HTML_NAME = "report.html"
FIGURES_TITLE = "Figures"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leash report",
        description="Aggregate the runs under DIR (a multirun included) into a comparison "
        "table (report.md, results.csv, results.json), figures (frontier.png, cost.png, "
        "curves.png) and report.html, all of it in one self-contained page.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="folder to search for runs")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    return parser


def _print_table(
    console: Console, runs: list[RunRecord], methods: list[Method], title: str
) -> None:
    """The console's table, fitted to 100 columns: one row per method (mean ± 95% CI) when
    runs repeat over seeds, else one per run; the files hold every row and column."""
    finished = sum(run.status == FINISHED for run in runs)
    console.print(f"{title} ({finished} finished)", markup=False)
    if methods:
        columns, _ = method_cells(methods)
        names = ["method", "seeds", *(c.name for c in columns)]
        table, left_out = fit_table(lambda kept: methods_rich(methods, kept), names)
    else:
        names = [c.name for c in shown_columns(runs)]
        table, left_out = fit_table(lambda kept: to_rich(runs, names=kept), names)
    Console(width=max(console.width, CONSOLE_WIDTH)).print(table)
    if left_out:
        console.print(f"(more columns in the files: {', '.join(left_out)})", markup=False)


def draw_figures(runs: list[RunRecord], out: Path) -> list[PlotFile]:
    """Every figure there is something to draw for: the frontier, the costs, the curves."""
    drawn = [plot_frontier(runs, out / "frontier.png"), plot_costs(runs, out / "cost.png"),
             plot_curves(runs, out / "curves.png")]
    return [figure for figure in drawn if figure is not None]


def figures_markdown(figures: list[PlotFile]) -> str:
    """report.md's figures section: where the one-page report is, then each figure."""
    lines = [f"The whole report on one page, figures embedded: [{HTML_NAME}]({HTML_NAME}).", ""]
    lines += [f"![{figure.path.stem}]({figure.path.name})" for figure in figures]
    return "\n".join(lines) + "\n"


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
    figures = draw_figures(runs, out)
    above = points_above_frontier(runs)
    names = ", ".join(run.name for run in above)
    bug = "**above the optimal frontier (a bug in training or evaluation)**"
    checks = [f"{bug}: {names}"] if above else []
    notes = [figure.source for figure in figures] + checks
    methods = methods_over_seeds(runs)
    _print_table(console, runs, methods, f"{len(runs)} runs under {args.dir}")
    if above:
        console.print(f"[bold red]warning:[/] above the optimal frontier: {escape(names)}")
    sections, extra = {}, {}
    if methods:
        sections[SEEDS_TITLE] = methods_markdown(methods)
        extra = {"results_by_method.csv": methods_csv(methods),
                 "results_by_method.json": json.dumps(methods_json(methods), indent=2)}
    sections[FIGURES_TITLE] = figures_markdown(figures)
    written = write_reports(runs, args.dir, out, notes, sections, extra)
    page = out / HTML_NAME
    write_text_atomic(page, to_html(runs, args.dir, methods, figures, checks))
    files = [path.name for path in written + [figure.path for figure in figures]]
    for line in (f"wrote {', '.join(files)} and {HTML_NAME} to {out}",
                 f"open {page.resolve().as_uri()} for the whole report on one page"):
        console.print(line, markup=False, soft_wrap=True)  # one line each, however long
    return 0
