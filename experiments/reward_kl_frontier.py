"""The DPO paper's Figure 2 (left) on `data=exact`: reward vs KL, against the exact optimum.

DPO across β, PPO (learned reward model) and PPO-GT (gold reward) across KL coefficients, the
SFT reference, and best-of-N sampling from the reference, all on the same held-out prompts of
the enumerable task, where every point is exact (no sampling error) and the optimal frontier
π*_β ∝ π_ref·exp(r/β) is drawn as the upper bound. A point above the frontier would be a bug
in training or evaluation: the script checks it and exits non-zero if one is.

Every run is one `leash train` process sharing the cached SFT policy, pairs and reward model:

    python experiments/reward_kl_frontier.py --out experiments/results/reward_kl_frontier

Writes the report of every run (`report.md`, `results.csv`), `best_of_n.md`/`.csv` and the
figure; :func:`summary` writes experiments/README.md's sentences from the committed files.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from leash.report.main import main as report_main  # noqa: E402
from leash.report.plots import points_above_frontier, run_point  # noqa: E402
from leash.report.runs import load_runs  # noqa: E402

GRID = {
    "dpo": ("algo.beta", [0.03, 0.1, 0.3, 1.0]),
    "ppo_gt": ("algo.kl_coef", [0.02, 0.05, 0.2]),
    "ppo": ("algo.kl_coef", [0.05, 0.2]),
}
BEST_OF = [2, 4, 8, 16, 64]
RESULTS = Path(__file__).parent / "results" / "reward_kl_frontier"
STYLE = {
    "dpo": ("tab:orange", "o"),
    "ppo": ("tab:green", "s"),
    "ppo_gt": ("tab:red", "^"),
    "sft": ("tab:purple", "*"),
}


def train(run_dir: Path, overrides: list[str]) -> bool:
    """One `leash train` unless the folder already holds a finished run (resumable script)."""
    if (run_dir / "metrics.json").exists():
        return True
    command = [sys.executable, "-m", "leash", "train", *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.run(command, check=False).returncode == 0


def best_of_n_points(sft_run: Path) -> list[tuple[int, float, float]]:
    """Exact (N, KL, reward) of best-of-N from the SFT policy on the evaluator's prompts."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from leash.config import TaskConfig
    from leash.data.tasks import SyntheticTask
    from leash.evaluation.best_of_n import best_of_n
    from leash.evaluation.oracle import ExactOracle, exact_gold_reward, exact_kl
    from leash.report.runs import read_run

    record = read_run(sft_run)
    task = SyntheticTask.from_config(TaskConfig(**record.config["data"]["task"]))
    policy = json.loads((sft_run / "artifacts.json").read_text())["policy"]
    model = AutoModelForCausalLM.from_pretrained(policy).eval()
    tokenizer = AutoTokenizer.from_pretrained(policy)
    reference = ExactOracle.for_task(task, tokenizer=tokenizer).distribution(model)
    points = []
    for n in BEST_OF:
        bon = best_of_n(reference, n)
        points.append((n, exact_kl(bon, reference), exact_gold_reward(bon)))
    return points


def plot(runs, best_of, path: Path) -> None:
    """Frontier, each method's points joined in order of KL, best-of-N, the reference."""
    figure, axes = plt.subplots(figsize=(7.5, 5))
    curve = next(run.frontier for run in runs if run.frontier is not None)
    max_kl = max([p.kl for p in filter(None, map(run_point, runs))] + [k for _, k, _ in best_of])
    kept = [(k, r) for k, r in zip(curve.kl, curve.reward, strict=True) if k <= 1.15 * max_kl]
    axes.plot(*zip(*kept, strict=True), color="tab:blue", lw=2, label="exact optimal frontier")
    for algo, (color, marker) in STYLE.items():
        points = sorted(
            (p.kl, p.reward)
            for run in runs
            if run.algo == algo
            for p in [run_point(run)]
            if p is not None
        )
        if points:
            axes.plot(
                *zip(*points, strict=True),
                color=color,
                marker=marker,
                ms=8,
                lw=1,
                label=algo.upper().replace("_", "-"),
            )
    axes.plot(
        [k for _, k, _ in best_of],
        [r for _, _, r in best_of],
        color="tab:gray",
        marker="D",
        lw=1,
        ls="--",
        label="best-of-N (N = " + ",".join(map(str, BEST_OF)) + ")",
    )
    axes.set_xlabel("KL(π ‖ π_ref), nats per prompt (exact)")
    axes.set_ylabel("expected gold reward (exact)")
    axes.set_title("Reward–KL frontier on data=exact (held-out prompts)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def write_best_of_n(best_of, curve, out: Path) -> None:
    """`best_of_n.md` and `.csv`: each N's exact KL, gold reward and gap to the frontier."""
    rows = [(n, kl, reward, curve.reward_at(kl) - reward) for n, kl, reward in best_of]
    lines = ["| best-of-N | exact KL | exact gold reward | frontier gap |", "|---|---|---|---|"]
    lines += [f"| {n} | {kl:.3f} | {reward:.3f} | {gap:.3f} |" for n, kl, reward, gap in rows]
    (out / "best_of_n.md").write_text("\n".join(lines) + "\n")
    with (out / "best_of_n.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["N", "exact KL (nats)", "gold reward", "frontier gap"])
        writer.writerows((n, f"{kl:.6g}", f"{r:.6g}", f"{gap:.6g}") for n, kl, r, gap in rows)
    print("\n".join(lines))


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def summary(results: Path = RESULTS) -> str:
    """experiments/README.md's sentences about the frontier, from the committed results."""
    with (results / "results.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["status"] == "finished"]
    with (results / "best_of_n.csv").open(newline="") as handle:
        best_of = list(csv.DictReader(handle))
    gaps: dict[str, list[float]] = {}
    dpo = []  # (β, exact KL)
    for row in rows:
        algo = row["method"].split("-")[0]
        if algo in GRID:
            gaps.setdefault(algo, []).append(float(row["frontier gap"]))
        if algo == "dpo":
            dpo.append((float(row["method"].split("beta=")[1]), float(row["exact KL (nats)"])))
    dpo.sort()
    kls = [kl for _, kl in dpo]
    trend = (
        f"exact KL {kls[0]:.2f} nats at β = {dpo[0][0]:g}, {kls[-1]:.2f} at β = {dpo[-1][0]:g}"
        + ("" if kls == sorted(kls, reverse=True) else ", not monotone in between")
    )
    closest = min(gaps, key=lambda algo: max(gaps[algo]))
    name = {"dpo": "DPO", "ppo": "PPO", "ppo_gt": "PPO-GT"}
    bon = [float(row["frontier gap"]) for row in best_of]
    return (
        f"What it shows on this task: {name[closest]} tracks the frontier most closely. Frontier "
        f"gaps: PPO-GT {_range(gaps['ppo_gt'])}, PPO with the learned reward model "
        f"{_range(gaps['ppo'])}, DPO {_range(gaps['dpo'])} ({trend}); PPO and DPO both learn "
        f"from the same noisy pairs. Best-of-N from the reference, which sees the gold reward "
        f"at inference time, lies {_range(bon)} under the curve (N = "
        f"{', '.join(row['N'] for row in best_of)})."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/reward_kl_frontier"))
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    runs_dir = args.out / "runs"
    ok = train(runs_dir / "sft", ["algo=sft", *args.overrides])
    for algo, (key, values) in GRID.items():
        for value in values:
            ok &= train(
                runs_dir / f"{algo}_{value}", [f"algo={algo}", f"{key}={value}", *args.overrides]
            )
    report_main([str(runs_dir), "--out", str(args.out)])
    runs = load_runs(runs_dir)
    best_of = best_of_n_points(runs_dir / "sft")
    plot(runs, best_of, args.out / "reward_kl_frontier.png")
    curve = next(run.frontier for run in runs if run.frontier is not None)
    write_best_of_n(best_of, curve, args.out)
    above = points_above_frontier(runs)
    above += [f"best-of-{n}" for n, kl, r in best_of if r > curve.reward_at(kl) + 1e-4]
    if above:
        print(f"ABOVE THE OPTIMAL FRONTIER (a bug): {above}", file=sys.stderr)
        return 1
    print(
        f"every point lies on or below the exact optimal frontier; figure: "
        f"{args.out / 'reward_kl_frontier.png'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
        raise SystemExit(0)
    raise SystemExit(main())
