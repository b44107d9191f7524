"""Runs that differ only in their seed, summarised: mean, standard deviation and a 95% interval.

A *method* is every finished run sharing a name once its ``seed=`` part is taken out (the name
holds the overrides that tell runs apart, see :func:`leash.report.runs.name_runs`): the seeds of
``leash compare seeds=[0,1,2]``, or of a multirun over ``seed``. Each numeric column of the
table is summarised over the method's seeds by its mean, its sample standard deviation
(``ddof=1``) and the half-width of the two-sided 95% Student-t interval for the mean,
``t(0.975, n - 1) * sd / sqrt(n)``: the seeds are taken as independent draws of the training
noise (and of the data, with ``upstream.seed=per_run``), with a normal spread, as usual for a
handful of seeds. A column some seed lacks is summarised over the seeds that have it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from rich import box
from rich.table import Table
from rich.text import Text

from leash.report.runs import FINISHED, RunRecord
from leash.report.table import COLUMNS, Column

CONFIDENCE = 0.95
SEEDS_TITLE = "Over seeds: mean ± half-width of the 95% t-interval"
SEED_IN_NAME = re.compile(r"(?:^|\s)seed=\S+")
"""The ``seed=<value>`` part :func:`~leash.report.runs.name_runs` puts in a run's name."""


def t_quantile(probability: float, dof: int) -> float:
    """The ``probability`` quantile of Student's t with ``dof`` degrees of freedom (> 0.5).

    Bisection on the CDF, ``1/2 + integral of the density from 0``, the integral taken with
    Simpson's rule on a fine grid: exact to about 1e-9 in the range a report uses.
    """
    if dof < 1 or not 0.5 < probability < 1:
        raise ValueError(f"t_quantile: need dof >= 1 and 0.5 < p < 1, got {dof}, {probability}")
    log_norm = (math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)
                - 0.5 * math.log(dof * math.pi))

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 20_001)
        density = np.exp(log_norm - (dof + 1) / 2 * np.log1p(grid**2 / dof))
        weights = np.ones_like(grid)
        weights[1:-1:2], weights[2:-1:2] = 4, 2
        return 0.5 + float(weights @ density) * (x / (len(grid) - 1)) / 3

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Spread:
    """One figure of a method over its seeds."""

    n: int
    """Seeds that have the figure."""
    mean: float
    sd: float | None
    """Sample standard deviation (None with one seed)."""
    ci95: float | None
    """Half-width of the 95% t-interval for the mean (None with one seed)."""

    def text(self, fmt: str) -> str:
        """``mean ± ci95`` in the column's format (the mean alone with one seed)."""
        mean = format(self.mean, fmt)
        return mean if self.ci95 is None else f"{mean} ± {format(self.ci95, fmt)}"


def spread(values: list[float]) -> Spread:
    """Mean, sample sd and 95% t half-width of one figure's values over seeds."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return Spread(n, mean, None, None)
    sd = float(np.std(values, ddof=1))
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    return Spread(n, mean, sd, half)


@dataclass
class Method:
    """The finished runs of one method, one per seed."""

    name: str
    """The runs' name without its ``seed=`` part."""
    algo: str
    runs: list[RunRecord]

    @property
    def seeds(self) -> list[str]:
        """The seeds, as the runs' configs give them."""
        return [str(run.config.get("seed")) for run in self.runs]


def method_name(run: RunRecord) -> str:
    """A run's name without its ``seed=`` part."""
    return " ".join(SEED_IN_NAME.sub(" ", run.name).split())


def methods_over_seeds(runs: list[RunRecord]) -> list[Method]:
    """The methods with at least two finished seeds, in the order of their first run."""
    groups: dict[tuple[str, str], Method] = {}
    for run in runs:
        if run.status == FINISHED:
            name = method_name(run)
            groups.setdefault((run.algo, name), Method(name, run.algo, [])).runs.append(run)
    return [method for method in groups.values() if len(set(method.seeds)) >= 2]


# ----------------------------------------------------------------------------------- tables
def numeric_columns() -> list[Column]:
    """The table's columns that hold numbers (every one with a format)."""
    return [column for column in COLUMNS if column.fmt]


def method_figures(method: Method) -> dict[str, Spread]:
    """Each numeric column's spread over the method's seeds (columns no seed has are left out)."""
    figures = {}
    for column in numeric_columns():
        values = [column.read(run) for run in method.runs]
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        if numbers:
            figures[column.header] = spread(numbers)
    return figures


def method_cells(methods: list[Method]) -> tuple[list[Column], list[list[str]]]:
    """The numeric columns some method has, and each method's cells in them (``mean ± ci``)."""
    tables = [method_figures(method) for method in methods]
    columns = [c for c in numeric_columns() if any(c.header in t for t in tables)]
    rows = [[t[c.header].text(c.fmt) if c.header in t else "" for c in columns] for t in tables]
    return columns, rows


def methods_markdown(methods: list[Method]) -> str:
    """One row per method: its seeds and every figure as ``mean ± 95% half-width``."""
    columns, rows = method_cells(methods)
    lines = [
        "| method | seeds | " + " | ".join(c.header for c in columns) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for method, cells in zip(methods, rows, strict=True):
        lines.append(f"| {method.name} | {','.join(method.seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def methods_csv(methods: list[Method]) -> str:
    """The per-method table at full precision: mean, sd, 95% half-width and n per figure."""
    header = ["method", "algo", "seeds"]
    for column in numeric_columns():
        header += [f"{column.header} {part}" for part in ("mean", "sd", "ci95", "n")]
    rows = [header]
    for method in methods:
        figures = method_figures(method)
        cells = [method.name, method.algo, " ".join(method.seeds)]
        for column in numeric_columns():
            found = figures.get(column.header)
            parts = (found.mean, found.sd, found.ci95, found.n) if found else (None,) * 4
            cells += ["" if value is None else repr(value) for value in parts]
        rows.append(cells)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def methods_rich(methods: list[Method], names: Collection[str] | None = None) -> Table:
    """The per-method table for the console (``method``, ``seeds`` and the figures named in
    ``names``, else all)."""
    columns, rows = method_cells(methods)
    shown = [i for i, c in enumerate(columns) if names is None or c.name in names]
    table = Table(title=SEEDS_TITLE, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ["method", "seeds", *(columns[i].header for i in shown)]:
        table.add_column(header, justify="left" if header in ("method", "seeds") else "right")
    for method, cells in zip(methods, rows, strict=True):
        table.add_row(Text(method.name), ",".join(method.seeds), *(cells[i] for i in shown))
    return table


def methods_json(methods: list[Method]) -> list[dict]:
    """The per-method summaries for results.json."""
    return [
        {
            "method": method.name,
            "algo": method.algo,
            "seeds": method.seeds,
            "runs": [str(run.path) for run in method.runs],
            "figures": {header: vars(found) for header, found in method_figures(method).items()},
        }
        for method in methods
    ]
