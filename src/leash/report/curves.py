"""Training curves of every method on shared axes: ``curves.png``.

Three rows of panels, the loss, the reward each method optimises and the KL to the reference,
each against the optimizer step (left) and against wall time (right), read from every run's
CSV log (``logs/metrics.csv``, :mod:`leash.logging_csv`). Solid lines are the per-step training
metric, dashed lines with dots the held-out one at each validation. A method run over several
seeds draws each seed thin and the mean over its seeds thick, at the steps every seed logged
(and at their mean wall time).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from leash.logging_csv import ELAPSED_COLUMN
from leash.report.plots import PlotFile, save_figure
from leash.report.runs import RunRecord
from leash.report.seeds import methods_over_seeds

LOG_FILE = Path("logs") / "metrics.csv"
"""Where a run folder keeps its CSV log."""


@dataclass(frozen=True)
class Quantity:
    """One row of panels: a metric each method logs under one of a few names."""

    label: str
    """Axis label."""
    train: tuple[str, ...]
    """Per-step training metric: the first of these a run logs (solid lines)."""
    held_out: tuple[str, ...]
    """Held-out metric at each validation: the first of these a run logs (dashed lines)."""


QUANTITIES = (
    Quantity("loss", ("train/loss", "train/loss/policy_avg"), ("val/loss",)),
    Quantity(
        "reward optimised\n(RM score, implicit or RM margin)",
        ("train/objective/scores", "train/rewards/margins", "train/margin"),
        ("val/rewards/margins", "val/margin"),
    ),
    Quantity("KL(π ‖ π_ref) (nats)", ("train/objective/kl",), ("eval/exact_kl", "eval/kl")),
)
"""The rows, top to bottom. The optimised reward is PPO's reward-model (or gold) score, DPO's
implicit reward margin β·(log-ratio of chosen - of rejected), a reward model's margin; DPO
logs no KL per step, so its KL is the evaluator's at each validation (exact when it can)."""


@dataclass(frozen=True)
class Series:
    """One metric of one run, by optimizer step."""

    key: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    elapsed: tuple[float, ...] | None
    """Wall time of each value in seconds (:data:`ELAPSED_COLUMN`); None if the log lacks it."""


def read_log(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run's CSV log (empty when it has none)."""
    path = run_dir / LOG_FILE
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def series(rows: list[dict[str, str]], key: str) -> Series | None:
    """``key``'s values by step, in step order (a step logged twice keeps its last value);
    None when no row has it."""
    found: dict[int, tuple[float, str]] = {}
    for row in rows:
        if row.get(key) and row.get("step"):
            found[int(float(row["step"]))] = (float(row[key]), row.get(ELAPSED_COLUMN) or "")
    if not found:
        return None
    steps = sorted(found)
    times = [found[step][1] for step in steps]
    elapsed = tuple(float(t) for t in times) if all(times) else None
    return Series(key, tuple(steps), tuple(found[step][0] for step in steps), elapsed)


def first_series(rows: list[dict[str, str]], keys: Iterable[str]) -> Series | None:
    """The series of the first of ``keys`` the log has."""
    return next((s for s in (series(rows, key) for key in keys) if s is not None), None)


def mean_series(runs: list[Series]) -> Series:
    """The mean over seeds at the steps every seed logged (wall time: the seeds' mean)."""
    common = sorted(set.intersection(*(set(s.steps) for s in runs)))

    def at(s: Series, column: tuple[float, ...]) -> list[float]:
        index = {step: i for i, step in enumerate(s.steps)}
        return [column[index[step]] for step in common]

    values = np.mean([at(s, s.values) for s in runs], axis=0) if common else []
    timed = all(s.elapsed is not None for s in runs) and common
    elapsed = tuple(np.mean([at(s, s.elapsed) for s in runs], axis=0)) if timed else None
    return Series(runs[0].key, tuple(common), tuple(float(v) for v in values), elapsed)


@dataclass
class MethodLogs:
    """A method's runs (its seeds, or one run) and their logs."""

    name: str
    logs: list[list[dict[str, str]]]

    def curves(self, keys: tuple[str, ...]) -> tuple[list[Series], Series | None]:
        """Each seed's series of the first of ``keys`` it logs, and their mean (None for one
        run, or when the seeds logged different keys)."""
        found = [s for s in (first_series(rows, keys) for rows in self.logs) if s is not None]
        same = len({s.key for s in found}) == 1
        return found, mean_series(found) if len(found) > 1 and same else None


def method_logs(runs: list[RunRecord]) -> list[MethodLogs]:
    """Every method (its seeds together) and every other run that has a log, in run order."""
    seeded = {run.path: method for method in methods_over_seeds(runs) for run in method.runs}
    groups: dict[tuple[bool, str], MethodLogs] = {}
    for run in runs:
        rows = read_log(run.path)
        if not rows:
            continue
        method = seeded.get(run.path)
        key = (method is not None, method.name if method else run.name)
        groups.setdefault(key, MethodLogs(key[1], [])).logs.append(rows)
    return list(groups.values())


def _draw(axes: Axes, curve: Series, by_time: bool, color: str, style: dict) -> None:
    """One series on ``axes`` against step or wall time (nothing when it has no wall time)."""
    if by_time and curve.elapsed is None:
        return
    axes.plot(curve.elapsed if by_time else curve.steps, curve.values, color=color, **style)


def _draw_method(
    axes_row: list[Axes], method: MethodLogs, quantity: Quantity, color: str
) -> list[str]:
    """A method's training and held-out curves on one row of panels; the keys drawn."""
    drawn = []
    for keys, dashed in ((quantity.train, False), (quantity.held_out, True)):
        seeds, mean = method.curves(keys)
        base = {"linestyle": "--", "marker": "o", "markersize": 3} if dashed else {}
        for axes, by_time in zip(axes_row, (False, True), strict=True):
            thin = {**base, "linewidth": 0.8, "alpha": 0.35} if mean else {**base, "linewidth": 1.5}
            for curve in seeds:
                _draw(axes, curve, by_time, color, thin)
            if mean is not None:
                _draw(axes, mean, by_time, color, {**base, "linewidth": 2.2})
        drawn += sorted({s.key for s in seeds})
    return drawn


def _legend(figure: Figure, methods: list[MethodLogs], colors: list[str]) -> None:
    """One legend for every panel: each method's colour, and what solid and dashed mean."""
    handles = [Line2D([], [], color=c, linewidth=2.2) for c in colors]
    labels = [method.name for method in methods]
    handles += [Line2D([], [], color="grey"), Line2D([], [], color="grey", linestyle="--",
                                                     marker="o", markersize=3)]
    labels += ["training, per step (thick: mean over seeds)", "held out, at each validation"]
    figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncol=min(4, len(labels)), fontsize=8, frameon=False)


def plot_curves(runs: list[RunRecord], path: Path) -> PlotFile | None:
    """Draw every method's training curves to ``path``; None when no run has a log."""
    methods = method_logs(runs)
    if not methods:
        return None
    rows = [q for q in QUANTITIES if any(m.curves(q.train + q.held_out)[0] for m in methods)]
    figure = Figure(figsize=(12, 3.2 * len(rows)), layout="constrained")
    grid = figure.subplots(len(rows), 2, sharex="col", sharey="row", squeeze=False)
    colors = [f"C{index % 10}" for index in range(len(methods))]
    used: list[str] = []
    for axes_row, quantity in zip(grid, rows, strict=True):
        keys = {m.name: _draw_method(list(axes_row), m, quantity, c)
                for m, c in zip(methods, colors, strict=True)}
        axes_row[0].set_ylabel(quantity.label)
        line = "; ".join(f"{name}: {', '.join(k)}" for name, k in keys.items() if k)
        used.append(f"{quantity.label.splitlines()[0]} ({line})")
        for axes in axes_row:
            axes.grid(alpha=0.3)
        if not axes_row[1].lines:
            axes_row[1].text(0.5, 0.5, f"no run logged {ELAPSED_COLUMN}", ha="center",
                             va="center", transform=axes_row[1].transAxes, color="grey")
    grid[-1][0].set_xlabel("optimizer step")
    grid[-1][1].set_xlabel("wall time since the logger started (s)")
    _legend(figure, methods, colors)
    save_figure(figure, path)
    untimed = [m.name for m in methods if all(ELAPSED_COLUMN not in log[0] for log in m.logs)]
    source = f"`{path.name}`: each run's {LOG_FILE}: " + "; ".join(used)
    if untimed:
        source += f"; no wall time logged ({ELAPSED_COLUMN}): {', '.join(untimed)}"
    return PlotFile(path, source)
