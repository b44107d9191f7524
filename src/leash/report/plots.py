"""Figures of a report (matplotlib's object API on the Agg canvas: no global backend change).

``frontier.png`` draws the exact optimal reward-KL frontier of each distinct reference and every
finished run as a point on it (a method run over several seeds: each seed, and its mean with
95% error bars); ``cost.png`` compares peak memory and throughput.
:func:`points_above_frontier` is the bug detector behind the first: no policy can beat π*_β.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leash.atomic import atomic_path
from leash.report.runs import FINISHED, FrontierCurve, RunRecord
from leash.report.seeds import Method, methods_over_seeds, spread
from leash.report.table import MIB

DPI = 150
"""Pixels per inch of every PNG figure."""

# Share of the plotted KL range left of the leftmost point, so no marker is cut in half.
_LEFT_MARGIN = 0.04


@dataclass(frozen=True)
class RunPoint:
    """Where one finished run lands in the reward-KL plane."""

    run: RunRecord
    kl: float
    """KL(π ‖ π_ref) in nats."""
    reward: float
    """Mean gold reward (on real data: the judge's, else the proxy RM's mean score)."""
    exact: bool
    """True for the exact metrics, False for sample estimates (eval/kl, eval/gold_reward)."""


@dataclass(frozen=True)
class PlotFile:
    """A written figure and a line on where its contents come from."""

    path: Path
    source: str


SCORE_AXES = (
    ("eval/exact_gold_reward", "gold reward (mean per response)"),
    ("eval/judge_score", "judge score (mean per response)"),
    ("eval/rm_score", "proxy RM score (mean per response)"),
)
"""What the vertical axis shows, first choice first: the gold reward, else (real data) the
independent judge's score, else the proxy reward model's."""


def score_axis(runs: list[RunRecord]) -> tuple[str, str]:
    """The metric and label of the vertical axis: the first of :data:`SCORE_AXES` any run has
    (the gold reward's exact or sampled form)."""
    for key, label in SCORE_AXES:
        keys = (key, "eval/gold_reward") if key == "eval/exact_gold_reward" else (key,)
        if any(run.metric(k) is not None for run in runs for k in keys):
            return key, label
    return SCORE_AXES[0]


def run_point(run: RunRecord, score: str = "eval/exact_gold_reward") -> RunPoint | None:
    """The run's exact (KL, gold reward) point, else its sampled one, else None; with a
    ``score`` other than the gold reward: (sample KL, that score)."""
    if run.status != FINISHED:
        return None
    pairs = (
        (("eval/exact_kl", "eval/exact_gold_reward", True), ("eval/kl", "eval/gold_reward", False))
        if score == "eval/exact_gold_reward"
        else (("eval/kl", score, False),)
    )
    for kl_key, reward_key, exact in pairs:
        kl, reward = run.metric(kl_key), run.metric(reward_key)
        if kl is not None and reward is not None:
            return RunPoint(run, kl, reward, exact)
    return None


def distinct_frontiers(runs: list[RunRecord]) -> list[tuple[FrontierCurve, list[RunRecord]]]:
    """Each distinct frontier among the runs, with the runs that wrote it (first seen first)."""
    groups: dict[FrontierCurve, list[RunRecord]] = {}
    for run in runs:
        if run.frontier is not None:
            groups.setdefault(run.frontier, []).append(run)
    return list(groups.items())


def _frontier_of(run: RunRecord, frontiers: list[FrontierCurve]) -> FrontierCurve | None:
    """The run's own frontier; else the only one among the runs; else None (ambiguous)."""
    if run.frontier is not None:
        return run.frontier
    return frontiers[0] if len(frontiers) == 1 else None


def points_above_frontier(runs: list[RunRecord], tolerance: float = 1e-4) -> list[RunRecord]:
    """Runs whose exact point beats the optimal reward at their KL by more than ``tolerance``.

    No policy can: such a run means a bug in training or in the evaluation. Sampled points are
    not checked (their noise can put them anywhere), nor runs without a frontier to compare.
    """
    frontiers = [curve for curve, _ in distinct_frontiers(runs)]
    flagged = []
    for run in runs:
        point = run_point(run)
        curve = _frontier_of(run, frontiers)
        if point is None or not point.exact or curve is None:
            continue
        if point.reward > curve.reward_at(point.kl) + tolerance:
            flagged.append(run)
    return flagged


def save_figure(figure: Figure, path: Path) -> None:
    """Render ``figure`` to PNG at ``path`` via a temporary file and a rename."""
    FigureCanvasAgg(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


def _visible(curve: FrontierCurve, kl_max: float) -> tuple[list[float], list[float]]:
    """The part of the curve with KL up to ``kl_max``, ending exactly at ``kl_max``."""
    kept = [(k, r) for k, r in zip(curve.kl, curve.reward, strict=True) if k < kl_max]
    kept.append((kl_max, curve.reward_at(kl_max)))
    kl, reward = zip(*kept, strict=True)
    return list(kl), list(reward)


def _frontier_label(index: int, curve: FrontierCurve, count: int) -> str:
    if count == 1:
        return "exact optimal frontier"
    return f"optimal frontier {index + 1} (ref. reward {curve.reference_reward:.3f})"


def _draw_points(
    axes: Axes, points: list[RunPoint], colors: dict[str, str], unnamed: set[Path]
) -> None:
    """One colour per algorithm, filled for exact points and hollow for sampled ones; runs at
    the same spot share one label; runs in ``unnamed`` (seeds of a method) get none."""
    for algo, color in colors.items():
        for exact in (True, False):
            chosen = [p for p in points if p.run.algo == algo and p.exact == exact]
            if not chosen:
                continue
            style = {"color": color} if exact else {"facecolors": "none", "edgecolors": color}
            label = algo if exact else f"{algo} (sampled: eval/kl, eval/gold_reward)"
            kl, reward = [p.kl for p in chosen], [p.reward for p in chosen]
            axes.scatter(kl, reward, s=36, zorder=4, label=label, **style)
    names: dict[tuple[float, float], list[str]] = {}
    for p in points:
        if p.run.path not in unnamed:
            names.setdefault((p.kl, p.reward), []).append(p.run.name)
    for spot, labels in names.items():
        text = ", ".join(labels)
        axes.annotate(text, spot, xytext=(4, 4), textcoords="offset points", fontsize=7)


def _draw_method_means(
    axes: Axes, runs: list[RunRecord], score: str, colors: dict[str, str]
) -> list[Method]:
    """Each method over seeds as its mean point with 95% t-interval error bars on both axes
    (:mod:`leash.report.seeds`); the methods drawn."""
    drawn = []
    for method in methods_over_seeds(runs):
        points = [p for p in (run_point(run, score) for run in method.runs) if p is not None]
        if len(points) < 2 or method.algo not in colors:
            continue
        kl, reward = spread([p.kl for p in points]), spread([p.reward for p in points])
        axes.errorbar(kl.mean, reward.mean, xerr=kl.ci95, yerr=reward.ci95, fmt="D",
                      markersize=7, capsize=3, color=colors[method.algo], zorder=5,
                      markeredgecolor="black", label=f"{method.name}: mean of {len(points)} "
                      "seeds ± 95% t-interval")
        axes.annotate(method.name, (kl.mean, reward.mean), xytext=(6, -10),
                      textcoords="offset points", fontsize=7)
        drawn.append(method)
    return drawn


def plot_frontier(runs: list[RunRecord], path: Path) -> PlotFile | None:
    """Draw the frontier(s) and the runs' points to ``path``; None when there is nothing to draw.

    The KL axis spans the runs' points (with a margin), not the whole curve, whose far end
    (β -> 0) would squeeze every run into the left edge.
    """
    frontiers = distinct_frontiers(runs)
    score, label = score_axis(runs)
    points = [p for p in (run_point(run, score) for run in runs) if p is not None]
    if not frontiers and not points:
        return None
    kl_max = max((p.kl for p in points), default=0.0) * 1.3
    if kl_max <= 0.0:
        kl_max = max(curve.kl[-1] for curve, _ in frontiers) if frontiers else 1.0
    figure = Figure(figsize=(8, 5.5))
    axes = figure.add_subplot()
    sources = []
    for index, (curve, owners) in enumerate(frontiers):
        color = f"C{index}"
        kl, reward = _visible(curve, kl_max)
        axes.plot(kl, reward, color=color, label=_frontier_label(index, curve, len(frontiers)))
        axes.scatter(
            [0.0],
            [curve.reference_reward],
            marker="*",
            s=180,
            color=color,
            zorder=3,
            label="reference policy (KL 0)" if index == 0 else None,
        )
        names = ", ".join(run.name for run in owners)
        sources.append(f"curve {index + 1}: frontier.json of {names}")
    algos = dict.fromkeys(p.run.algo for p in points)
    colors = {algo: f"C{len(frontiers) + k}" for k, algo in enumerate(algos)}
    seeded = _draw_method_means(axes, runs, score, colors)
    _draw_points(axes, points, colors, {run.path for m in seeded for run in m.runs})
    kl_min = min([0.0, *(p.kl for p in points)])  # a sampled k1 estimate can be < 0
    axes.set_xlim(kl_min - _LEFT_MARGIN * (kl_max - kl_min), kl_max)
    axes.set_xlabel("KL(π ‖ π_ref) (nats per prompt)")
    axes.set_ylabel(label)
    axes.set_title("Reward vs KL to the reference")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    save_figure(figure, path)
    what = ("(eval/exact_kl, eval/exact_gold_reward) of each finished run (hollow: eval/kl, "
            "eval/gold_reward when the exact metrics are absent)"
            if score == "eval/exact_gold_reward" else f"(eval/kl, {score}) of each finished run")
    source = (
        f"`{path.name}`: points are {what}; "
        + ("; ".join(sources) if sources else "no run wrote frontier.json")
    )
    return PlotFile(path, source)


def plot_costs(runs: list[RunRecord], path: Path) -> PlotFile | None:
    """Bar charts of peak memory and training tokens/s per finished run; None if none has them."""
    measured = [r for r in runs if r.status == FINISHED and "peak_memory_bytes" in r.resources]
    if not measured:
        return None
    names = [run.name for run in measured]
    figure = Figure(figsize=(10, 0.5 * len(measured) + 1.5))
    memory_axes, speed_axes = figure.subplots(1, 2, sharey=True)
    memory = [run.resources["peak_memory_bytes"] / MIB for run in measured]
    speed = [float(run.resources.get("tokens_per_s") or 0.0) for run in measured]
    memory_axes.barh(names, memory, color="C0")
    memory_axes.set_xlabel("peak memory (MiB)")
    memory_axes.invert_yaxis()
    speed_axes.barh(names, speed, color="C1")
    speed_axes.set_xlabel("training throughput (tokens/s)")
    for axes in (memory_axes, speed_axes):
        axes.grid(axis="x", alpha=0.3)
    kinds = sorted({str(run.resources.get("peak_memory_kind")) for run in measured})
    figure.suptitle(f"What each run costs (memory: {', '.join(kinds)})")
    save_figure(figure, path)
    source = (
        f"`{path.name}`: resources.peak_memory_bytes and resources.tokens_per_s of each "
        "finished run"
    )
    return PlotFile(path, source)
