"""DPO on `data=exact` over β × learning rate: heatmaps of exact reward, exact KL, frontier gap.

The grid is `sweeps/dpo_beta_lr.yaml` (β ∈ {0.01, 0.03, 0.1, 0.3, 1} × lr ∈ {3e-4, 1e-3, 3e-3},
15 jobs), run as ONE Hydra multirun into `<out>/multirun`, one folder per cell
(`beta<β>_lr<lr>`, under `overrides-<hash>/` when other overrides are given). Every cell is
read back with `leash.report.runs.load_runs` and three metrics are drawn and tabulated, each
exact (every response of the held-out prompts enumerated):

- `eval/exact_gold_reward`: expected gold reward of the trained policy;
- `eval/exact_kl`: KL(π ‖ π_ref) in nats per prompt;
- `eval/frontier_gap`: optimal reward at the run's exact KL minus its exact reward (0 = on the
  optimal frontier π*_β ∝ π_ref·exp(r/β); lower is better).

    python experiments/beta_lr_grid.py --out experiments/results/beta_lr_grid

Shrink the grid with `algo.beta=...` / `algo.lr=...` (they replace the sweep's values); any
other argument is a Hydra override passed to every job:

    python experiments/beta_lr_grid.py --out /tmp/grid algo.beta=0.1,1.0 algo.lr=1e-3

Resumable: a cell that already has a finished run (same overrides) in `<out>/multirun` is not
trained again. When some are missing, the multirun covers the smallest β × lr product holding
them (a finished cell inside it resumes from its final checkpoint, which costs one evaluation).
Writes `beta_lr_grid.png`, `beta_lr_grid.md` (a table per metric) and `beta_lr_grid.csv`; a
cell without a finished run is marked `failed` in all three (`n/a`: finished without the
metric, e.g. with fewer steps than `trainer.val_check_interval`); the script then exits 1.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from leash.report.runs import RunRecord, load_runs  # noqa: E402
from leash.resources import sweeps_dir  # noqa: E402

SWEEP = "dpo_beta_lr"
RESULTS = Path(__file__).parent / "results" / "beta_lr_grid" / "beta_lr_grid.csv"
METRICS = [
    # (key, title, colormap, higher is better)
    ("eval/exact_gold_reward", "exact gold reward", "viridis", True),
    ("eval/exact_kl", "exact KL(π ‖ π_ref), nats", "magma", False),
    ("eval/frontier_gap", "frontier gap (lower is better)", "viridis_r", False),
]
# The sweep folder's name for each cell; Hydra fills it in per job.
SUBDIR = "beta${algo.beta}_lr${algo.lr}"


def subdir(extra: list[str]) -> str:
    """A cell's folder, under `overrides-<hash>/` when other overrides are given: a run resumes
    its folder's checkpoint, so two settings of the same cell must never share one."""
    if not extra:
        return SUBDIR
    digest = hashlib.sha1(" ".join(sorted(extra)).encode()).hexdigest()[:8]
    return f"overrides-{digest}/{SUBDIR}"


def sweep_grid() -> dict[str, list[str]]:
    """The sweep file's values of `algo.beta` and `algo.lr`, as the strings written there."""
    params = OmegaConf.load(sweeps_dir() / f"{SWEEP}.yaml").hydra.sweeper.params
    return {key: str(params[key]).split(",") for key in ("algo.beta", "algo.lr")}


def split_overrides(overrides: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The grid (sweep values, replaced by `algo.beta=`/`algo.lr=` overrides) and the rest."""
    grid = sweep_grid()
    rest = []
    for text in overrides:
        key, _, value = text.partition("=")
        if key in grid:
            grid[key] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            rest.append(text)
    return grid, rest


def same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def cell_of(run: RunRecord) -> tuple[float, float] | None:
    algo = run.config.get("algo") or {}
    try:
        return float(algo["beta"]), float(algo["lr"])
    except (KeyError, TypeError, ValueError):
        return None


def matching_runs(multirun: Path, extra: list[str]) -> list[RunRecord]:
    """DPO runs under `multirun` whose overrides, β and lr aside, are this invocation's."""
    if not multirun.is_dir():
        return []
    wanted = sorted([f"sweep={SWEEP}", *extra])
    kept = []
    for run in load_runs(multirun):
        others = sorted(o for o in run.overrides if o.partition("=")[0] not in sweep_grid())
        if run.algo == "dpo" and others == wanted and cell_of(run) is not None:
            kept.append(run)
    return kept


def find_cell(runs: list[RunRecord], beta: float, lr: float) -> RunRecord | None:
    """The cell's finished run if there is one, else its latest failed one, else None."""
    found = [r for r in runs if (c := cell_of(r)) and same(c[0], beta) and same(c[1], lr)]
    finished = [r for r in found if r.status == "finished"]
    return (finished or found or [None])[-1]


def train(multirun: Path, grid: dict[str, list[str]], extra: list[str]) -> float:
    """One multirun over the cells of `grid` not yet finished; returns its wall time (s)."""
    runs = matching_runs(multirun, extra)
    missing = [
        (b, lr)
        for b in grid["algo.beta"]
        for lr in grid["algo.lr"]
        if (run := find_cell(runs, float(b), float(lr))) is None or run.status != "finished"
    ]
    if not missing:
        print(f"every cell already finished under {multirun}; not training")
        return 0.0
    betas = [b for b in grid["algo.beta"] if any(m[0] == b for m in missing)]
    lrs = [lr for lr in grid["algo.lr"] if any(m[1] == lr for m in missing)]
    print(f"{len(missing)} cell(s) to train: multirun over β {betas} × lr {lrs}", flush=True)
    command = [
        sys.executable, "-m", "leash", "train", "-m", f"sweep={SWEEP}",
        f"algo.beta={','.join(betas)}", f"algo.lr={','.join(lrs)}", *extra,
        f"hydra.sweep.dir={multirun}", f"hydra.sweep.subdir={subdir(extra)}",
    ]  # fmt: skip
    print(" ".join(command), flush=True)
    start = time.monotonic()
    code = subprocess.run(command, check=False).returncode
    seconds = time.monotonic() - start
    print(f"multirun exited {code} after {seconds:.0f} s", flush=True)
    return seconds


def label(value: str) -> str:
    """Axis label of a grid value: `0.01`, `3e-4` (log-spaced grids read best this way)."""
    number = float(value)
    if number < 1e-2:
        mantissa, exponent = f"{number:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{number:g}"


def values_of(cells, key: str) -> np.ndarray:
    """Matrix (β rows × lr columns) of one metric; NaN where a cell failed or lacks it."""
    return np.array(
        [[np.nan if r is None or r.metric(key) is None else r.metric(key) for r in row]
         for row in cells]
    )  # fmt: skip


def plot(cells, grid: dict[str, list[str]], path: Path, title: str) -> None:
    """Three heatmaps side by side, β down, lr across, each cell's value written in it."""
    betas, lrs = grid["algo.beta"], grid["algo.lr"]
    width = 3.2 * 3 + 0.9 * max(len(lrs) - 3, 0) * 3
    figure, axes = plt.subplots(1, 3, figsize=(width, 1.0 + 0.55 * len(betas) + 1.4))
    for ax, (key, name, cmap, _) in zip(axes, METRICS, strict=True):
        values = values_of(cells, key)
        colors = plt.get_cmap(cmap).copy()
        colors.set_bad("lightgray")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colors, aspect="auto")
        finite = values[np.isfinite(values)]
        middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
        for i in range(len(betas)):
            for j in range(len(lrs)):
                run, value = cells[i][j], values[i, j]
                if np.isfinite(value):
                    dark = (value < middle) != cmap.endswith("_r")
                    ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=9,
                            color="white" if dark else "black")  # fmt: skip
                else:
                    text = "failed" if run is None or run.status != "finished" else "n/a"
                    ax.text(j, i, text, ha="center", va="center", fontsize=9, color="tab:red")
        ax.set_xticks(range(len(lrs)), [label(v) for v in lrs])
        ax.set_yticks(range(len(betas)), [label(v) for v in betas])
        ax.set_xlabel("learning rate (log-spaced)")
        ax.set_ylabel("β (log-spaced)")
        ax.set_title(name, fontsize=10)
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def markdown(cells, grid: dict[str, list[str]], header: str) -> str:
    """A table per metric, β rows × lr columns; `failed` where a cell has no finished run."""
    betas, lrs = grid["algo.beta"], grid["algo.lr"]
    lines = [header, ""]
    for key, name, _, higher in METRICS:
        values = values_of(cells, key)
        finite = values[np.isfinite(values)]
        best = (finite.max() if higher else finite.min()) if finite.size else None
        lines += [f"## {name} (`{key}`)", ""]
        lines += ["| β \\ lr | " + " | ".join(label(v) for v in lrs) + " |"]
        lines += ["|---" * (len(lrs) + 1) + "|"]
        for i, beta in enumerate(betas):
            row = []
            for j in range(len(lrs)):
                run, value = cells[i][j], values[i, j]
                if not np.isfinite(value):
                    row.append("failed" if run is None or run.status != "finished" else "n/a")
                else:
                    row.append(f"**{value:.3f}**" if value == best else f"{value:.3f}")
            lines += [f"| {label(beta)} | " + " | ".join(row) + " |"]
        lines += [""]
    best_note = "Bold: the best cell of each table (highest reward, lowest KL, lowest gap)."
    return "\n".join([*lines, best_note, ""])


def write_csv(cells, grid: dict[str, list[str]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["beta", "lr", "status", *(k for k, *_ in METRICS), "run_dir"])
        for i, beta in enumerate(grid["algo.beta"]):
            for j, lr in enumerate(grid["algo.lr"]):
                run = cells[i][j]
                status = "failed" if run is None else run.status
                values = ["" if run is None or run.metric(k) is None else f"{run.metric(k):.6g}"
                          for k, *_ in METRICS]  # fmt: skip
                where = "" if run is None else os.path.relpath(run.path)
                writer.writerow([beta, lr, status, *values, where])


def summary(path: Path = RESULTS) -> str:
    """experiments/README.md's sentences about the grid, from the committed CSV."""
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "finished"]
    gold, kl, gap = (METRICS[i][0] for i in range(3))

    def cell(row) -> str:
        return f"β = {label(row['beta'])}, lr = {label(row['lr'])}"

    def by(key: str, row) -> float:
        return float(row[key])

    betas = sorted({row["beta"] for row in rows}, key=float)
    rising = all(
        [by(kl, r) for r in sorted((r for r in rows if r["beta"] == b), key=lambda r: by("lr", r))]
        == sorted(by(kl, r) for r in rows if r["beta"] == b)
        for b in betas
    )
    low, high = (min(rows, key=lambda r: by(kl, r)), max(rows, key=lambda r: by(kl, r)))
    best, worst = max(rows, key=lambda r: by(gold, r)), min(rows, key=lambda r: by(gold, r))
    nearest = min(rows, key=lambda r: by(gap, r))
    return (
        f"What it shows: KL {'grows with lr at every β' if rising else 'is not monotone in lr'}"
        f", from {by(kl, low):.2f} nats ({cell(low)}) to {by(kl, high):.2f} ({cell(high)}). The "
        f"best reward, {by(gold, best):.3f}, comes at {cell(best)} (KL {by(kl, best):.2f}); the "
        f"worst, {by(gold, worst):.3f}, at {cell(worst)}, {by(kl, worst):.2f} nats from the "
        f"reference and {by(gap, worst):.2f} below the frontier. The frontier gap is smallest, "
        f"{by(gap, nearest):.3f}, at {cell(nearest)}, which stays close to the reference (KL "
        f"{by(kl, nearest):.2f}) with a reward of {by(gold, nearest):.3f}."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/beta_lr_grid"))
    parser.add_argument(
        "overrides", nargs="*", help="algo.beta=.../algo.lr=... (replace the grid), or any "
        "Hydra override for every job"
    )  # fmt: skip
    args = parser.parse_args()
    grid, extra = split_overrides(args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    multirun = (args.out / "multirun").resolve()
    seconds = train(multirun, grid, extra)
    runs = matching_runs(multirun, extra)
    cells = [[find_cell(runs, float(b), float(lr)) for lr in grid["algo.lr"]]
             for b in grid["algo.beta"]]  # fmt: skip
    failed = [(b, lr) for i, b in enumerate(grid["algo.beta"])
              for j, lr in enumerate(grid["algo.lr"])
              if cells[i][j] is None or cells[i][j].status != "finished"]  # fmt: skip
    lacking = [(b, lr) for i, b in enumerate(grid["algo.beta"])
               for j, lr in enumerate(grid["algo.lr"])
               if (run := cells[i][j]) is not None and run.status == "finished"
               and any(run.metric(k) is None for k, *_ in METRICS)]  # fmt: skip
    job_seconds = sum(
        float(run.resources.get("wall_time_s") or 0.0) for row in cells for run in row if run
    )
    jobs = len(grid["algo.beta"]) * len(grid["algo.lr"])
    title = f"DPO on data=exact, β × lr ({jobs} jobs" + (f"; {' '.join(extra)})" if extra else ")")
    plot(cells, grid, args.out / "beta_lr_grid.png", title)
    header = (
        f"# {title}\n\nEvery value is exact (all responses of the held-out prompts enumerated). "
        f"Runs: `{args.out / 'multirun'}`. Training wall time of this invocation: {seconds:.0f} s"
        f"{' (nothing left to train)' if not seconds else ''}; the jobs' own wall times "
        f"(`resources.wall_time_s`) add up to {job_seconds:.0f} s."
        + (f"\n\nFailed cells (no finished run): {failed}" if failed else "")
        + (f"\n\nFinished cells lacking a metric (n/a): {lacking}" if lacking else "")
    )
    text = markdown(cells, grid, header)
    (args.out / "beta_lr_grid.md").write_text(text)
    write_csv(cells, grid, args.out / "beta_lr_grid.csv")
    print(text)
    print(f"figure: {args.out / 'beta_lr_grid.png'}")
    if failed or lacking:
        print(f"FAILED CELLS: {failed}; cells lacking a metric: {lacking}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
        raise SystemExit(0)
    raise SystemExit(main())
