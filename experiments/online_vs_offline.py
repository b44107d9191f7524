"""Online versus offline on `data=exact`, after Tang et al. (2024): who gets closer to the optimum?

Six methods learn from one preference set (one SFT policy, one pair set, one reward model, built
once: `upstream.seed=shared`):

- offline: `dpo` on the static pairs;
- online, DPO losses: `online_dpo` (each step samples two responses per prompt from the current
  policy and labels them with the reward model) and `iterative_dpo` (rounds of a whole sampled
  preference set, DPO trained on each);
- online, policy gradient: `ppo` (GAE, a critic), `rloo` and `grpo` (no critic).

Each at two KL strengths (β for the DPO losses, kl_coef for the policy-gradient ones) and three
seeds, 36 runs at one torch thread each, `--jobs` at a time. Every figure is exact. Per method
and strength: exact gold reward, exact KL and frontier gap (mean ± 95% t-interval over seeds),
every policy's implicit reward model `β·log π/π_ref` (β the method's strength) as a classifier
of the held-out pairs (`eval/implicit_rm_accuracy` against their labels, and
`eval/implicit_rm_gold_accuracy` against the gold reward's ranking; Tang et al. found offline
policies classify better but generate worse), and for online and iterative DPO the share of
sampled pairs that tied at the last step (two equal responses: the policy has stopped
exploring). Per KL budget B: each method's best strength with mean
KL ≤ B, and its gap to the optimal reward at B (`frontier(B) - reward`; a method that stays far
below B pays for it). No run may lie above the exact frontier: the script checks it and exits 1
if one does.

    python experiments/online_vs_offline.py --out experiments/results/online_vs_offline \\
        --runs /tmp/online_vs_offline_runs
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from run_pool import (  # noqa: E402
    Run,
    check_runs,
    run_all,
    study_arguments,
    training_span,
    write_csv,
)

from leash.report.runs import FINISHED, RunRecord, read_run  # noqa: E402
from leash.report.seeds import Spread, spread  # noqa: E402

METHODS = {
    # method: (offline or online, strength key, strengths, colour)
    "dpo": ("offline", "algo.beta", ("0.1", "0.3"), "tab:orange"),
    "online_dpo": ("online", "algo.beta", ("0.1", "0.3"), "tab:brown"),
    "iterative_dpo": ("online", "algo.beta", ("0.1", "0.3"), "tab:pink"),
    "ppo": ("online", "algo.kl_coef", ("0.05", "0.2"), "tab:green"),
    "rloo": ("online", "algo.kl_coef", ("0.05", "0.2"), "tab:cyan"),
    "grpo": ("online", "algo.kl_coef", ("0.05", "0.2"), "tab:blue"),
}
SEEDS = (0, 1, 2)
BUDGETS = (1.0, 2.0, 4.0)
"""KL budgets, nats per prompt."""
RESULTS = Path(__file__).parent / "results" / "online_vs_offline"


@dataclass
class Cell:
    """One method at one strength, over its seeds."""

    method: str
    strength: str
    runs: list[RunRecord]

    def figure(self, key: str) -> Spread | None:
        values = [r.metric(key) for r in self.runs if r.status == FINISHED]
        values = [v for v in values if v is not None and math.isfinite(v)]
        return spread(values) if values else None

    @property
    def label(self) -> str:
        return f"{self.method} {METHODS[self.method][1].split('.')[-1]}={self.strength}"


def runs_of(out: Path, extra: list[str]) -> list[Run]:
    """Every run of the study, the slowest methods first."""
    order = ["grpo", "rloo", "iterative_dpo", "online_dpo", "ppo", "dpo"]
    return [
        Run(f"{m} {METHODS[m][1]}={s} seed={seed}", out / m / f"{s}" / f"seed_{seed}",
            (f"algo={m}", "data=exact", f"{METHODS[m][1]}={s}", f"seed={seed}",
             "upstream.seed=shared", *extra))
        for m in order for s in METHODS[m][2] for seed in SEEDS
    ]  # fmt: skip


def cells_of(runs_dir: Path) -> list[Cell]:
    return [
        Cell(m, s, [read_run(runs_dir / m / s / f"seed_{seed}") for seed in SEEDS])
        for m in METHODS for s in METHODS[m][2]
    ]  # fmt: skip


def _text(figure: Spread | None) -> str:
    return "" if figure is None else f"{figure.mean:.4f}"


def _ci(figure: Spread | None) -> str:
    return "" if figure is None or figure.ci95 is None else f"{figure.ci95:.4f}"


KEYS = {
    "gold reward": "eval/exact_gold_reward",
    "exact KL (nats)": "eval/exact_kl",
    "frontier gap": "eval/frontier_gap",
    "implicit RM accuracy": "eval/implicit_rm_accuracy",
    "implicit RM gold accuracy": "eval/implicit_rm_gold_accuracy",
    "last tie fraction": "train/pairs/tie_fraction",
    "response length": "eval/response_length",
}


def cell_rows(cells: list[Cell]) -> list[dict[str, str]]:
    rows = []
    for cell in cells:
        row = {"cell": cell.label, "kind": METHODS[cell.method][0],
               "finished": f"{sum(r.status == FINISHED for r in cell.runs)}/{len(cell.runs)}"}
        for name, key in KEYS.items():
            figure = cell.figure(key)
            row[f"{name} mean"], row[f"{name} ci95"] = _text(figure), _ci(figure)
        rows.append(row)
    return rows


def budget_rows(cells: list[Cell], frontier) -> list[dict[str, str]]:
    """Per method: at each budget, its best strength within it and the gap to frontier(B)."""
    rows = []
    for method in METHODS:
        row = {"method": method, "kind": METHODS[method][0]}
        for budget in BUDGETS:
            inside = [c for c in cells if c.method == method
                      and (kl := c.figure(KEYS["exact KL (nats)"])) and kl.mean <= budget]
            best = max(inside, key=lambda c: c.figure(KEYS["gold reward"]).mean, default=None)
            gap = (None if best is None else
                   frontier.reward_at(budget) - best.figure(KEYS["gold reward"]).mean)
            row[f"gap at KL {budget:g}"] = "" if gap is None else f"{gap:.4f}"
            row[f"best at KL {budget:g}"] = "" if best is None else best.strength
        rows.append(row)
    return rows


def plot(cells: list[Cell], frontier, path: Path) -> None:
    """Exact reward against exact KL: each run faint, each cell's mean with 95% error bars."""
    figure, axes = plt.subplots(figsize=(8, 5.2))
    top = max((r.metric(KEYS["exact KL (nats)"]) or 0) for c in cells for r in c.runs)
    kept = [(k, r) for k, r in zip(frontier.kl, frontier.reward, strict=True) if k <= 1.2 * top]
    axes.plot(*zip(*kept, strict=True), color="black", lw=1.5, label="exact optimal frontier")
    for method, (kind, _, _, colour) in METHODS.items():
        for index, cell in enumerate(c for c in cells if c.method == method):
            finished = [r for r in cell.runs if r.status == FINISHED]
            axes.scatter([r.metric(KEYS["exact KL (nats)"]) for r in finished],
                         [r.metric(KEYS["gold reward"]) for r in finished],
                         color=colour, alpha=0.3, s=12)  # fmt: skip
            kl, gold = cell.figure(KEYS["exact KL (nats)"]), cell.figure(KEYS["gold reward"])
            if kl is None or gold is None:
                continue
            axes.errorbar(kl.mean, gold.mean, xerr=kl.ci95, yerr=gold.ci95, color=colour,
                          marker="o" if kind == "online" else "s", ms=7, capsize=3,
                          label=f"{method} ({kind})" if index == 0 else None)  # fmt: skip
    for budget in BUDGETS:
        axes.axvline(budget, color="gray", ls=":", lw=0.8)
    axes.set_xlim(left=0)  # a KL is never negative; a wide interval may reach below 0
    axes.set_xlabel("exact KL(π ‖ π_ref), nats per prompt")
    axes.set_ylabel("exact gold reward")
    axes.set_title("Online vs offline on data=exact (mean ± 95% t-interval over 3 seeds)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def classification_versus_generation(cells: dict[str, dict[str, str]]) -> str:
    """Tang et al.'s contrast, method by method: implicit-RM accuracy and gold reward (each the
    mean of the method's cells' seed means) of every online method against offline DPO's."""
    accuracy, gold = "implicit RM accuracy mean", "gold reward mean"
    if not all(row[accuracy] for row in cells.values()):
        return "Some cells have no implicit-RM accuracy: the contrast is not measured here."
    listed = ", ".join(f"{name} {float(row[accuracy]):.3f} ± "
                       f"{float(row['implicit RM accuracy ci95']):.3f}"
                       for name, row in cells.items())  # fmt: skip
    means: dict[str, tuple[float, float]] = {}
    for method in METHODS:
        rows = [row for name, row in cells.items() if name.split()[0] == method]
        means[method] = (sum(float(r[accuracy]) for r in rows) / len(rows),
                         sum(float(r[gold]) for r in rows) / len(rows))  # fmt: skip
    offline = [m for m in METHODS if METHODS[m][0] == "offline"]
    off_acc = sum(means[m][0] for m in offline) / len(offline)
    off_gold = sum(means[m][1] for m in offline) / len(offline)
    verdicts: dict[str, list[str]] = {}
    for method in (m for m in METHODS if m not in offline):
        acc, reward = means[method]
        if acc < off_acc and reward > off_gold:
            verdict = "holds against {} (they classify worse and generate better)"
        elif acc >= off_acc:
            verdict = "not against {} (they classify at least as well)"
        else:
            verdict = "not against {} (they classify worse but generate no better)"
        verdicts.setdefault(verdict, []).append(method)
    return (
        "Every policy read as an implicit reward model (β·log π/π_ref) classifies the held-out "
        f"pairs (accuracy against their labels, over seeds): {listed}. Per method, accuracy / "
        "gold reward (means of its two strengths): "
        + ", ".join(f"{m} {a:.3f} / {g:.3f}" for m, (a, g) in means.items())
        + ". Tang et al.'s \"offline classifies better but generates worse\" "
        + "; ".join(verdict.format(", ".join(methods)) for verdict, methods
                    in sorted(verdicts.items(), key=lambda item: not item[0].startswith("holds")))
        + "."
    )


def summary(results: Path = RESULTS) -> str:
    """The READMEs' sentences about the study, from its committed tables."""
    with (results / "online_vs_offline_budgets.csv").open(newline="") as handle:
        budgets = list(csv.DictReader(handle))
    with (results / "online_vs_offline_cells.csv").open(newline="") as handle:
        cells = {row["cell"]: row for row in csv.DictReader(handle)}
    lines = []
    for budget in BUDGETS:
        column = f"gap at KL {budget:g}"
        ranked = sorted((float(r[column]), r["method"]) for r in budgets if r[column])
        order = ", ".join(f"{m} {g:.3f}" for g, m in ranked)
        outside = [r["method"] for r in budgets if not r[column]]
        lines.append(f"At a KL budget of {budget:g} nats, the gap to the optimum (lower is "
                     f"better): {order}"
                     + (f" (no strength within it: {', '.join(outside)})." if outside else "."))
    ties = "last tie fraction"
    tied = [(name, row) for name, row in cells.items() if row[f"{ties} mean"]]
    if tied:
        lines.append(
            f"Online and iterative DPO end with "
            f"{'most' if min(float(r[f'{ties} mean']) for _, r in tied) > 0.5 else 'many'} "
            "sampled pairs tied (last tie fraction "
            + ", ".join(f"{n} {float(r[f'{ties} mean']):.2f}" for n, r in tied)
            + "): the policy samples the same response twice and stops finding pairs to learn "
            "from; their gold reward over seeds ("
            + ", ".join(f"{n} {float(r['gold reward mean']):.3f} ± "
                        f"{float(r['gold reward ci95']):.3f}" for n, r in tied) + ")."
        )  # fmt: skip
    lines.append(classification_versus_generation(cells))
    return "\n".join(lines)


def main() -> int:
    args, runs_dir = study_arguments(__doc__.splitlines()[0], RESULTS)
    runs = runs_of(runs_dir, args.overrides)
    wall = run_all(runs, runs_dir / "cache", args.jobs)
    span = training_span([run.folder for run in runs])
    cells = cells_of(runs_dir)
    records = [r for c in cells for r in c.runs]
    frontier = next(r.frontier for r in records if r.frontier is not None)
    write_csv(args.out / "online_vs_offline_cells.csv", cell_rows(cells))
    write_csv(args.out / "online_vs_offline_budgets.csv", budget_rows(cells, frontier))
    plot(cells, frontier, args.out / "online_vs_offline.png")
    text = summary(args.out)
    (args.out / "online_vs_offline.md").write_text(
        f"# Online vs offline on data=exact\n\n{len(runs)} runs, {args.jobs} at a time at one "
        f"torch thread: {span:.0f} s from the first run's start to the last one's end (this "
        f"invocation: {wall:.0f} s). Runs: `{runs_dir}`.\n\n{text}\n")
    print(text)
    return check_runs(records)


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
        raise SystemExit(0)
    raise SystemExit(main())
