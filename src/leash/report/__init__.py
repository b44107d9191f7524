"""Reports over run folders: the comparison table, its files and the reward-KL figure."""

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
