"""Reports over run folders: the comparison table, its files, the figures (reward-KL frontier,
costs, training curves) and report.html, all of it on one self-contained page."""

from __future__ import annotations

from leash.report.plots import points_above_frontier, run_point
from leash.report.runs import FrontierCurve, RunRecord, load_runs
from leash.report.table import COLUMNS, Column

__all__ = [
    "COLUMNS",
    "Column",
    "FrontierCurve",
    "RunRecord",
    "load_runs",
    "points_above_frontier",
    "run_point",
]
