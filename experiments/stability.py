"""Is PPO the less stable method? DPO and PPO over hyperparameter grids of one size, 3 seeds each.

The seed documents claim PPO is "notoriously sensitive to hyperparameters (a slightly-off
learning rate or KL coefficient and the run diverges)" and DPO "cheaper, stabler, and far
easier to reproduce". On `data=exact`, where reward and KL are exact, this script measures it:

- DPO over β × lr and PPO (learned reward model) over kl_coef × lr, each 3 × 3 around the
  method's default, neighbours a factor of 3 apart (the same relative steps for both);
- every cell over seeds 0, 1, 2 with `upstream.seed=shared`: one SFT policy, one set of pairs
  and one reward model for every run, so the seeds differ in training noise only (batch order
  for DPO; rollouts and minibatch order for PPO), which is what "reproduce" asks about;
- every run is one `leash train` process at one torch thread, `--jobs` of them at a time.

Per method it reports the spread across seeds (the sample sd of exact gold reward and of exact
KL within each cell, their median and maximum over cells), how many cells *fail* (a cell fails
when any of its seeds is non-finite — the run stopped on a NaN/inf — or ends with exact gold
reward below the SFT reference's), and how many cells come within 10% of the method's best:
of its lowest mean frontier gap (gap ≤ 1.1 × best) and, because a run that barely leaves the
reference has a gap near 0 too, of its highest mean reward gain over the reference
(gain ≥ 0.9 × best). Writes `stability.md`, `stability_summary.csv`, `stability_cells.csv`,
`stability_runs.csv` and `stability.png` (heatmaps) to `--out`:

    python experiments/stability.py --out experiments/results/stability

Resumable: a run folder under `--runs` (default `<out>/runs`) holding metrics.json is not
trained again. Trailing arguments are Hydra overrides given to every run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from run_pool import Run, run_all, status_of, study_arguments, training_span, write_csv  # noqa: E402


@dataclass(frozen=True)
class Grid:
    """One method's grid: the algorithm, its second hyperparameter and both value lists."""

    algo: str
    key: str
    symbol: str
    values: tuple[str, ...]
    lrs: tuple[str, ...]


GRIDS = [
    Grid("dpo", "algo.beta", "β", ("0.03", "0.1", "0.3"), ("3e-4", "1e-3", "3e-3")),
    Grid("ppo", "algo.kl_coef", "kl_coef", ("0.02", "0.05", "0.2"), ("1e-4", "3e-4", "1e-3")),
]
SEEDS = [0, 1, 2]
WITHIN = 0.10
"""A cell is "near the best" within this fraction of the method's best cell."""
RESULTS = Path(__file__).parent / "results" / "stability" / "stability_summary.csv"


@dataclass(frozen=True)
class Job:
    grid: Grid
    value: str
    lr: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.grid.algo} {self.grid.symbol}={self.value} lr={self.lr} seed={self.seed}"

    def folder(self, runs: Path) -> Path:
        cell = f"{self.grid.key.split('.')[-1]}{self.value}_lr{self.lr}"
        return runs / self.grid.algo / cell / f"seed_{self.seed}"


@dataclass
class Outcome:
    """What one run ended with: exact figures, or how it failed."""

    job: Job
    status: str
    """`finished`, `non-finite` (stopped on a NaN/inf) or `failed` (any other error)."""
    gold: float = math.nan
    kl: float = math.nan
    gap: float = math.nan
    reference_gold: float = math.nan
    wall_s: float = math.nan

    @property
    def collapsed(self) -> bool:
        return self.status == "finished" and self.gold < self.reference_gold

    @property
    def fails(self) -> bool:
        return self.status == "non-finite" or self.collapsed


def jobs_of(grid: Grid) -> list[Job]:
    return [Job(grid, v, lr, s) for v in grid.values for lr in grid.lrs for s in SEEDS]


def run_of(job: Job, runs: Path, extra: list[str]) -> Run:
    """The `leash train` of a job: its grid cell and seed, upstream shared, on `data=exact`."""
    return Run(job.name, job.folder(runs), (
        f"algo={job.grid.algo}", "data=exact", f"{job.grid.key}={job.value}",
        f"algo.lr={job.lr}", f"seed={job.seed}", "upstream.seed=shared", *extra))  # fmt: skip


def outcome_of(job: Job, runs: Path) -> Outcome:
    """Read a run folder: exact figures from metrics.json, else the failure from error.txt."""
    metrics_path = job.folder(runs) / "metrics.json"
    if not metrics_path.is_file():
        return Outcome(job, status_of(job.folder(runs)))
    payload = json.loads(metrics_path.read_text())
    metrics = payload["metrics"]

    def value(key: str) -> float:
        found = metrics.get(key)
        return math.nan if found is None else float(found)

    finite = all(math.isfinite(value(k)) for k in ("eval/exact_gold_reward", "eval/exact_kl"))
    return Outcome(
        job, "finished" if finite else "non-finite", value("eval/exact_gold_reward"),
        value("eval/exact_kl"), value("eval/frontier_gap"),
        value("eval/reference_exact_gold_reward"), float(payload["resources"]["wall_time_s"]),
    )  # fmt: skip


@dataclass
class Cell:
    """One grid cell over its seeds."""

    grid: Grid
    value: str
    lr: str
    outcomes: list[Outcome]

    def _finished(self, field: str) -> list[float]:
        return [getattr(o, field) for o in self.outcomes if o.status == "finished"]

    def mean(self, field: str) -> float:
        values = self._finished(field)
        return float(np.mean(values)) if values else math.nan

    def sd(self, field: str) -> float:
        values = self._finished(field)
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan

    @property
    def gain(self) -> float:
        return self.mean("gold") - self.mean("reference_gold")

    @property
    def fails(self) -> bool:
        return any(o.fails for o in self.outcomes)

    @property
    def label(self) -> str:
        return f"{self.grid.symbol}={self.value}, lr={self.lr}"


def cells_of(grid: Grid, outcomes: dict[Job, Outcome]) -> list[Cell]:
    return [
        Cell(grid, v, lr, [outcomes[Job(grid, v, lr, s)] for s in SEEDS])
        for v in grid.values for lr in grid.lrs
    ]  # fmt: skip


def summary_row(grid: Grid, cells: list[Cell]) -> dict[str, str]:
    """One method's line of the summary table (see the module docstring for each rule)."""
    runs = [o for c in cells for o in c.outcomes]
    healthy = [c for c in cells if not c.fails]
    best_gap = min((c.mean("gap") for c in healthy), default=math.nan)
    best_gain = max((c.gain for c in healthy), default=math.nan)
    near_gap = [c for c in healthy if c.mean("gap") <= (1 + WITHIN) * best_gap]
    near_gain = [c for c in healthy if c.gain >= (1 - WITHIN) * best_gain]
    gold_sd = [c.sd("gold") for c in cells if math.isfinite(c.sd("gold"))]
    kl_sd = [c.sd("kl") for c in cells if math.isfinite(c.sd("kl"))]
    best = max(healthy, key=lambda c: c.gain, default=None)
    means = [c.mean("gold") for c in cells if math.isfinite(c.mean("gold"))]

    def count(part: list, whole: list) -> str:
        return f"{len(part)}/{len(whole)}"

    return {
        "method": grid.algo,
        "grid": f"{grid.symbol} × lr",
        "gold reward over cells (min)": f"{min(means):.4f}",
        "gold reward over cells (max)": f"{max(means):.4f}",
        "seed sd of gold reward (median)": f"{np.median(gold_sd):.4f}",
        "seed sd of gold reward (max)": f"{max(gold_sd):.4f}",
        "seed sd of KL (median)": f"{np.median(kl_sd):.4f}",
        "seed sd of KL (max)": f"{max(kl_sd):.4f}",
        "non-finite runs": count([o for o in runs if o.status == "non-finite"], runs),
        "runs below SFT": count([o for o in runs if o.collapsed], runs),
        "failed cells": count([c for c in cells if c.fails], cells),
        "cells within 10% of best gap": count(near_gap, cells),
        "cells within 10% of best gain": count(near_gain, cells),
        "best cell (gain)": "" if best is None else f"{best.label} ({best.gain:.3f})",
        "run time (s, sum)": f"{sum(o.wall_s for o in runs if math.isfinite(o.wall_s)):.0f}",
    }


def cell_rows(cells: list[Cell]) -> list[dict[str, str]]:
    return [{
        "method": c.grid.algo, "value": c.value, "lr": c.lr,
        "gold reward mean": f"{c.mean('gold'):.4f}", "gold reward sd": f"{c.sd('gold'):.4f}",
        "KL mean": f"{c.mean('kl'):.4f}", "KL sd": f"{c.sd('kl'):.4f}",
        "frontier gap mean": f"{c.mean('gap'):.4f}", "gain mean": f"{c.gain:.4f}",
        "fails": str(c.fails).lower(),
    } for c in cells]  # fmt: skip


def run_rows(outcomes: list[Outcome], runs: Path) -> list[dict[str, str]]:
    return [{
        "method": o.job.grid.algo, "value": o.job.value, "lr": o.job.lr, "seed": str(o.job.seed),
        "status": o.status, "gold reward": f"{o.gold:.6g}", "KL": f"{o.kl:.6g}",
        "frontier gap": f"{o.gap:.6g}", "reference gold reward": f"{o.reference_gold:.6g}",
        "wall time (s)": f"{o.wall_s:.1f}", "run": os.path.relpath(o.job.folder(runs), runs),
    } for o in outcomes]  # fmt: skip


PANELS = [
    # (title, value of a cell, colormap)
    ("mean exact gold reward", lambda c: c.mean("gold"), "viridis"),
    ("seed sd of gold reward", lambda c: c.sd("gold"), "magma_r"),
    ("seed sd of exact KL", lambda c: c.sd("kl"), "magma_r"),
    ("mean frontier gap", lambda c: c.mean("gap"), "viridis_r"),
]


def plot(by_method: dict[str, list[Cell]], path: Path) -> None:
    """A row of heatmaps per method, hyperparameter down, lr across; failed cells marked ✗."""
    figure, axes = plt.subplots(len(GRIDS), len(PANELS), figsize=(15, 3.3 * len(GRIDS)))
    for row, grid in zip(axes, GRIDS, strict=True):
        cells = by_method[grid.algo]
        for ax, (title, of, cmap) in zip(row, PANELS, strict=True):
            values = np.array([of(c) for c in cells]).reshape(len(grid.values), len(grid.lrs))
            colors = plt.get_cmap(cmap).copy()
            colors.set_bad("lightgray")
            image = ax.imshow(np.ma.masked_invalid(values), cmap=colors, aspect="auto")
            for index, cell in enumerate(cells):
                i, j = divmod(index, len(grid.lrs))
                text = "n/a" if not np.isfinite(values[i, j]) else f"{values[i, j]:.3f}"
                ax.text(j, i, text + (" ✗" if cell.fails else ""), ha="center", va="center",
                        fontsize=9, color="tab:red" if cell.fails else "black",
                        bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0})  # fmt: skip
            ax.set_xticks(range(len(grid.lrs)), grid.lrs)
            ax.set_yticks(range(len(grid.values)), grid.values)
            ax.set_xlabel("learning rate")
            ax.set_ylabel(grid.symbol)
            ax.set_title(f"{grid.algo}: {title}", fontsize=10)
            figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.suptitle(f"Stability on data=exact: {len(SEEDS)} seeds per cell, shared upstream "
                    "(✗: a seed non-finite or below the SFT reference)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def markdown(summary: list[dict[str, str]], by_method: dict[str, list[Cell]], note: str) -> str:
    """The summary table, then each method's cells (mean ± sd over seeds)."""
    header = list(summary[0])
    lines = ["# Stability of DPO and PPO on data=exact", "", note, "",
             "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in summary]
    for grid in GRIDS:
        lines += ["", f"## {grid.algo}: cells (mean ± sd over seeds)", "",
                  f"| {grid.symbol} | lr | gold reward | exact KL | frontier gap | fails |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for c in by_method[grid.algo]:
            lines.append(
                f"| {c.value} | {c.lr} | {c.mean('gold'):.3f} ± {c.sd('gold'):.3f} | "
                f"{c.mean('kl'):.3f} ± {c.sd('kl'):.3f} | {c.mean('gap'):.3f} | "
                f"{'yes' if c.fails else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def summary(path: Path = RESULTS) -> str:
    """The READMEs' sentences about stability, from the committed summary table."""
    with path.open(newline="") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    dpo, ppo = rows["dpo"], rows["ppo"]

    def value(row: dict[str, str], column: str) -> float:
        return float(row[column])

    low, high = "gold reward over cells (min)", "gold reward over cells (max)"
    typical, worst = "seed sd of gold reward (median)", "seed sd of gold reward (max)"
    time = "run time (s, sum)"

    def failed(row: dict[str, str]) -> int:
        return int(row["failed cells"].split("/")[0])

    def span(row: dict[str, str]) -> str:
        return f"{value(row, low):.3f}–{value(row, high):.3f}"

    def spread(row: dict[str, str]) -> float:
        return value(row, high) - value(row, low)

    steadier = "DPO" if value(dpo, typical) < value(ppo, typical) else "PPO"
    more_fail = failed(ppo) > failed(dpo)
    if more_fail or spread(ppo) > spread(dpo):
        verdict = "The claim that PPO is the fragile one holds here: " + (
            "more of its cells fail" if more_fail else
            "its reward moves more with its hyperparameters than DPO's")  # fmt: skip
    else:
        verdict = "The claim that PPO is the fragile one does not hold here: " + (
            "neither method breaks" if failed(ppo) == failed(dpo) == 0 else
            "no more of its cells fail than DPO's"  # fmt: skip
        ) + ", and its reward moves less with its hyperparameters than DPO's"
    return "\n".join([
        f"Over a 3 × 3 grid per method (neighbours a factor of 3 apart around the defaults) and "
        f"3 seeds per cell with one shared SFT policy, pair set and reward model, "
        f"{dpo['failed cells']} DPO cells and {ppo['failed cells']} PPO cells fail (a seed "
        f"non-finite or below the SFT reference: non-finite runs {dpo['non-finite runs']} and "
        f"{ppo['non-finite runs']}).",
        f"Across cells the mean exact gold reward spans {span(dpo)} for DPO and {span(ppo)} for "
        f"PPO; across seeds the typical cell's sd of gold reward is {value(dpo, typical):.3f} "
        f"(DPO) against {value(ppo, typical):.3f} (PPO), the largest {value(dpo, worst):.3f} "
        f"against {value(ppo, worst):.3f}, so {steadier} is the more reproducible from seed to "
        "seed in a typical cell.",
        f"Cells within 10% of the best reward gain: DPO {dpo['cells within 10% of best gain']}, "
        f"PPO {ppo['cells within 10% of best gain']}; within 10% of the best frontier gap: "
        f"{dpo['cells within 10% of best gap']} and {ppo['cells within 10% of best gap']} (the "
        "gap favours cells that barely leave the reference).",
        f"{verdict}; PPO's runs cost {value(ppo, time) / value(dpo, time):.1f}× DPO's time.",
    ])


def main() -> int:
    args, runs = study_arguments(__doc__.splitlines()[0], Path("experiments/results/stability"))
    # PPO first: the longest jobs start first, so the two workers finish together.
    jobs = [job for grid in reversed(GRIDS) for job in jobs_of(grid)]
    wall = run_all([run_of(job, runs, args.overrides) for job in jobs], runs / "cache", args.jobs)
    span = training_span([job.folder(runs) for job in jobs])
    outcomes = {job: outcome_of(job, runs) for job in jobs}
    broken = [o.job.name for o in outcomes.values() if o.status == "failed"]
    by_method = {grid.algo: cells_of(grid, outcomes) for grid in GRIDS}
    summary = [summary_row(grid, by_method[grid.algo]) for grid in GRIDS]
    note = (f"{len(jobs)} runs ({len(SEEDS)} seeds per cell, `upstream.seed=shared`, "
            f"{args.jobs} at a time, 1 torch thread each): {span:.0f} s from the first run's "
            f"start to the last one's end (this invocation: {wall:.0f} s). Runs: `{runs}`.")
    write_csv(args.out / "stability_summary.csv", summary)
    cells = [c for grid in GRIDS for c in by_method[grid.algo]]
    write_csv(args.out / "stability_cells.csv", cell_rows(cells))
    write_csv(args.out / "stability_runs.csv", run_rows(list(outcomes.values()), runs))
    plot(by_method, args.out / "stability.png")
    text = markdown(summary, by_method, note)
    (args.out / "stability.md").write_text(text)
    print(text)
    if broken:
        print(f"runs that failed for another reason than a NaN/inf: {broken}; see their "
              f"seed_<n>.log under {runs}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
        raise SystemExit(0)
    raise SystemExit(main())
