"""Coverage on `data=exact`, after Xu et al. (2024): what mass do DPO and RM + PPO put off the data?

Xu et al. ("Is DPO superior to PPO for LLM alignment?", ICML 2024) show that DPO's optimum can
put probability on responses the preference data never shows, while PPO on a reward model under
a KL penalty stays closer to the reference. Here the pairs (two SFT samples each) may only hold
a random subset S of all responses, `data.task.pair_coverage` c ∈ {1, 0.5, 0.25} (one S for
every prompt, nested across c). At each c, DPO learns from the pairs and PPO from a reward model
trained on them, sampling freely; each at two KL strengths (β ∈ {0.1, 0.3}, kl_coef ∈ {0.05,
0.2}), 3 seeds: 36 runs at one torch thread, `--jobs` at a time, from one SFT policy trained
first (`upstream.sft_policy`; `upstream.seed=shared`: one pair set and reward model per c).

Every final policy is then enumerated exactly. With D(x) the responses of prompt x's training
pairs and D those of any: *outside its pairs* is Σ π(y|x) over y ∉ D(x) on the train prompts
(mean, and the largest prompt's); *outside the data* and *outside S*, the mass over y ∉ D and
y ∉ S on the held-out prompts; *reward outside its pairs*, E_π[r | y ∉ D(x)] pooled over the
train prompts. Beside them, each run's exact gold reward, KL and frontier gap (held-out prompts)
and the SFT reference's masses. A run above the exact frontier makes the script exit 1.

    python experiments/coverage.py --out experiments/results/coverage --runs /tmp/coverage_runs
"""

from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from datasets import load_from_disk  # noqa: E402
from run_pool import (  # noqa: E402
    Run,
    check_runs,
    run_all,
    study_arguments,
    training_span,
    write_csv,
)
from transformers import AutoModelForCausalLM  # noqa: E402

from leash.config import TaskConfig  # noqa: E402
from leash.data.tasks import SyntheticTask  # noqa: E402
from leash.evaluation.oracle import ExactOracle, ResponseSpace  # noqa: E402
from leash.report.runs import FINISHED, RunRecord, read_run  # noqa: E402
from leash.report.seeds import spread  # noqa: E402

COVERAGES = ("1", "0.5", "0.25")
METHODS = {
    # method: (strength key, its symbol, strengths, colours)
    "dpo": ("algo.beta", "β", ("0.1", "0.3"), ("tab:orange", "tab:red")),
    "ppo": ("algo.kl_coef", "kl_coef", ("0.05", "0.2"), ("tab:green", "tab:blue")),
}
MATCHED = (("0.1", "0.05"), ("0.3", "0.2"))
"""(DPO β, PPO kl_coef) pairs that end at similar exact KL on this task (the stability study)."""
SEEDS = (0, 1, 2)
COLUMNS = {  # column: its metrics.json key, or None for a mass the script computes
    "gold reward": "eval/exact_gold_reward",
    "exact KL": "eval/exact_kl",
    "frontier gap": "eval/frontier_gap",
    "outside its pairs": None,
    "outside its pairs (largest prompt)": None,
    "outside the data": None,
    "outside S": None,
    "reward outside its pairs": None,
}
RESULTS = Path(__file__).parent / "results" / "coverage"
REF = "the reference"


@dataclass(frozen=True)
class Job:
    method: str
    strength: str
    coverage: str
    seed: int

    @property
    def cell(self) -> str:
        return cell_name(self.method, self.strength, self.coverage)

    def folder(self, runs: Path) -> Path:
        return runs / f"c{self.coverage}" / self.method / self.strength / f"seed_{self.seed}"


def cell_name(method: str, strength: str | None, coverage: str) -> str:
    """`dpo β=0.1 c=0.5`, or `sft c=0.5` for the reference."""
    if strength is None:
        return f"{method} c={coverage}"
    return f"{method} {METHODS[method][1]}={strength} c={coverage}"


JOBS = [Job(m, s, c, seed) for m in ("ppo", "dpo") for s in METHODS[m][2] for c in COVERAGES
        for seed in SEEDS]  # fmt: skip  (every run, PPO's, the longest, first)


def run_of(job: Job, runs: Path, sft_policy: str, extra: list[str]) -> Run:
    return Run(f"{job.cell} seed={job.seed}", job.folder(runs), (
        f"algo={job.method}", "data=exact", f"data.task.pair_coverage={job.coverage}",
        f"{METHODS[job.method][0]}={job.strength}", f"seed={job.seed}", "upstream.seed=shared",
        f"upstream.sft_policy={sft_policy}", *extra))  # fmt: skip


# ------------------------------------------------------------------------------ exact masses
def response_keys(task: SyntheticTask, space: ResponseSpace) -> dict[tuple[str, bool], int]:
    """Each response of the space as (text, ended), as the pairs write it -> its index."""
    rows = zip(space.words.tolist(), space.ended.tolist(), strict=True)
    return {(" ".join(task.response_words[w] for w in row if w >= 0), bool(ended)): index
            for index, (row, ended) in enumerate(rows)}  # fmt: skip


def pair_support(keys: dict[tuple[str, bool], int], prompts: list[str], rows) -> torch.Tensor:
    """(M, N) whether response n is the chosen or rejected response of a pair of prompt m."""
    inside = torch.zeros(len(prompts), len(keys), dtype=torch.bool)
    where = {prompt: m for m, prompt in enumerate(prompts)}
    for row in rows:
        m = where[row["prompt"]]
        inside[m, keys[row["chosen"], row["chosen_ended"]]] = True
        inside[m, keys[row["rejected"], row["rejected_ended"]]] = True
    return inside


def mass_outside(probs: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """(M,) Σ π(y|x) over the responses outside: (M, N) probs, (M, N) or (N,) bool inside."""
    return (probs * ~inside).sum(-1)


def reward_outside(probs: torch.Tensor, rewards: torch.Tensor, inside: torch.Tensor) -> float:
    """E_π[r | y outside], pooled over prompts: Σ π·r / Σ π over the responses outside."""
    weights = probs * ~inside
    return float((weights * rewards).sum() / weights.sum())


@dataclass(frozen=True)
class Support:
    """The responses one coverage level's training pairs hold, as masks over the space."""

    coverage: str
    pairs: int
    own: torch.Tensor  # (M_train, N): in a pair of its prompt, D(x)
    subset: torch.Tensor  # (N,): in the pair support S
    anywhere: torch.Tensor  # (N,): in any training pair, D


class Oracles:
    """The exact oracles of the task's train and held-out prompts, built once."""

    def __init__(self, task: SyntheticTask) -> None:
        self.task = task
        self.train = ExactOracle.for_task(task, task.train_prompts)
        self.heldout = ExactOracle.for_task(task)

    def support(self, coverage: str, pairs_folder: str) -> Support:
        """The masks of the training pairs saved at ``pairs_folder`` (coverage ``coverage``)."""
        task = SyntheticTask.from_config(replace(self.task.config, pair_coverage=float(coverage)))
        keys = response_keys(task, self.train.space)
        rows = load_from_disk(pairs_folder)["train"]
        subset = torch.zeros(len(keys), dtype=torch.bool)
        subset[[i for key, i in keys.items() if task.in_pair_support(*key)]] = True
        own = pair_support(keys, task.train_prompts, rows)
        return Support(coverage, len(rows), own, subset, own.any(0))

    def masses(self, policy: str, supports: list[Support]) -> list[dict[str, float]]:
        """The masses of the policy saved at ``policy`` against each support."""
        model = AutoModelForCausalLM.from_pretrained(policy)
        train, heldout = self.train.distribution(model), self.heldout.distribution(model)
        figures = []
        for support in supports:
            own = mass_outside(train.probs(), support.own)
            figures.append({
                "outside its pairs": float(own.mean()),
                "outside its pairs (largest prompt)": float(own.max()),
                "outside the data": float(mass_outside(heldout.probs(), support.anywhere).mean()),
                "outside S": float(mass_outside(heldout.probs(), support.subset).mean()),
                "reward outside its pairs": reward_outside(train.probs(), train.rewards,
                                                           support.own),
            })  # fmt: skip
        return figures


def run_figures(record: RunRecord, masses: dict[str, float]) -> dict[str, float]:
    """A run's figures: its evaluator's exact metrics and the script's masses."""
    return {**{name: record.metric(key) for name, key in COLUMNS.items() if key}, **masses}


# ------------------------------------------------------------------------------------- tables
def cell_row(cell: str, method: str, strength: str, coverage: str,
             runs: list[dict[str, float] | None]) -> dict[str, str]:  # fmt: skip
    """One cell: every column's mean and 95% t half-width over its finished seeds."""
    done = [r for r in runs if r is not None]
    row = {"cell": cell, "method": method, "strength": strength, "coverage": coverage,
           "finished": f"{len(done)}/{len(runs)}"}  # fmt: skip
    for column in COLUMNS:
        values = [r[column] for r in done if r.get(column) is not None]
        figure = spread(values) if values else None
        row[f"{column} mean"] = "" if figure is None else f"{figure.mean:.4f}"
        half = None if figure is None else figure.ci95
        row[f"{column} ci95"] = "" if half is None else f"{half:.4f}"
    return row


def support_row(support: Support) -> dict[str, str]:
    return {
        "coverage": support.coverage,
        "responses in the space": str(len(support.subset)),
        "share of responses in S": f"{float(support.subset.double().mean()):.4f}",
        "train pairs": str(support.pairs),
        "responses in the pairs": str(int(support.anywhere.sum())),
        "responses per prompt in its pairs": f"{float(support.own.sum(-1).double().mean()):.2f}",
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------------- figure
def _figure(row: dict[str, str], column: str) -> tuple[float, float]:
    """A cell's mean and 95% half-width (nan: no run finished; 0: one value, the reference)."""
    return float(row[f"{column} mean"] or "nan"), float(row[f"{column} ci95"] or 0)


PANELS = {
    "outside its pairs": "π mass outside its prompt's pairs (train prompts)",
    "outside S": "π mass outside S, which no pair holds (held-out prompts)",
    "reward outside its pairs": "gold reward of the mass outside its pairs",
}


def plot(cells: list[dict[str, str]], frontier, path: Path) -> None:
    """Masses and reward off the data against coverage; every cell against the frontier."""
    figure, grid = plt.subplots(2, 2, figsize=(13, 9.5))
    axes = grid.ravel()
    by = {row["cell"]: row for row in cells}
    x = range(len(COVERAGES))
    lines = [(f"{m} {METHODS[m][1]}={s}", colour, [by[cell_name(m, s, c)] for c in COVERAGES])
             for m in METHODS for s, colour in zip(METHODS[m][2], METHODS[m][3], strict=True)]
    lines.append(("SFT reference", "black", [by[cell_name("sft", None, c)] for c in COVERAGES]))
    for ax, (column, label) in zip(axes[:3], PANELS.items(), strict=True):
        for name, colour, rows in lines:
            means, halves = zip(*(_figure(r, column) for r in rows), strict=True)
            ax.errorbar(x, means, yerr=halves, color=colour, marker="o", capsize=3, label=name,
                        ls="--" if colour == "black" else "-")  # fmt: skip
        ax.set(xticks=list(x), xticklabels=[f"c = {c}" for c in COVERAGES], ylabel=label,
               xlabel="pair coverage c (share of all responses the pairs may hold)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    top = max(_figure(r, "exact KL")[0] for r in cells)
    kept = [(k, r) for k, r in zip(frontier.kl, frontier.reward, strict=True) if k <= 1.2 * top]
    axes[3].plot(*zip(*kept, strict=True), color="black", lw=1.5, label="exact optimal frontier")
    for name, colour, rows in lines[:-1]:
        for row, marker in zip(rows, "os^", strict=True):
            (kl, kl_ci), (gold, gold_ci) = _figure(row, "exact KL"), _figure(row, "gold reward")
            axes[3].errorbar(kl, gold, xerr=kl_ci, yerr=gold_ci, color=colour, marker=marker,
                             capsize=2, label=f"{name} c={row['coverage']}")  # fmt: skip
    axes[3].set(xlim=(0, None), xlabel="exact KL(π ‖ π_ref), nats (held-out prompts)",
                ylabel="exact gold reward (held-out prompts)")
    axes[3].legend(fontsize=6, ncol=2, loc="lower right")
    axes[3].grid(alpha=0.3)
    figure.suptitle("Coverage on data=exact: mean ± 95% t-interval, 3 seeds (○ c=1, □ 0.5, △ 0.25)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ------------------------------------------------------------------------------------ summary
def _mean(row: dict[str, str], column: str) -> float:
    return float(row[f"{column} mean"])


def _ci(row: dict[str, str], column: str) -> str:
    figure = f"{_mean(row, column):.3f}"
    return figure + (f" ± {float(row[f'{column} ci95']):.3f}" if row[f"{column} ci95"] else "")


def _sign(a: dict[str, str], b: dict[str, str], column: str) -> int:
    """+1 (-1) when cell a's 95% interval in ``column`` lies wholly above (below) b's, else 0."""
    (m_a, h_a), (m_b, h_b) = _figure(a, column), _figure(b, column)
    return 1 if m_a - h_a > m_b + h_b else -1 if m_a + h_a < m_b - h_b else 0


def _tally(signs: list[int], whose: str = "PPO") -> str:
    return f"above {whose}'s in {signs.count(1)} and below in {signs.count(-1)} of {len(signs)}"


def cells_text(by: dict[str, dict[str, str]], coverage: str, column: str) -> str:
    """Every cell of one coverage level in one column, then the reference."""
    methods = "; ".join(
        f"{m.upper()} " + ", ".join(f"{METHODS[m][1]}={s} "
                                    f"{_ci(by[cell_name(m, s, coverage)], column)}"
                                    for s in METHODS[m][2]) for m in METHODS
    )  # fmt: skip
    return f"{methods}; reference {_ci(by[cell_name('sft', None, coverage)], column)}"


def coverage_sentence(by: dict[str, dict[str, str]], coverage: str) -> str:
    """One coverage level: the mass outside its pairs (and outside S), and that mass's reward."""
    subset = "" if coverage == "1" else (
        f"; outside S (held-out prompts): {cells_text(by, coverage, 'outside S')}")  # fmt: skip
    return (f"At c = {coverage}, the mass outside its prompt's pairs: "
            f"{cells_text(by, coverage, 'outside its pairs')}{subset}; the gold reward of the "
            f"mass outside its pairs: {cells_text(by, coverage, 'reward outside its pairs')}.")


def comparisons(by: dict[str, dict[str, str]], column: str,
                coverages: tuple[str, ...] = COVERAGES) -> dict[str, list[int]]:  # fmt: skip
    """Over ``coverages`` and the matched strengths, :func:`_sign` of DPO's ``column`` against
    PPO's, of DPO's against the reference's, and of PPO's against the reference's."""
    triples = [(by[cell_name("dpo", b, c)], by[cell_name("ppo", k, c)],
                by[cell_name("sft", None, c)]) for c in coverages for b, k in MATCHED]  # fmt: skip
    return {
        "dpo-ppo": [_sign(d, p, column) for d, p, _ in triples],
        "dpo-ref": [_sign(d, r, column) for d, _, r in triples],
        "ppo-ref": [_sign(p, r, column) for _, p, r in triples],
    }


def data_sentence(by: dict[str, dict[str, str]], data: dict[str, dict[str, str]]) -> str:
    """What the pairs of each coverage hold, and the reference's mass off them."""
    listed = ", ".join

    def reference(column: str) -> str:
        return listed(f"{_mean(by[cell_name('sft', None, c)], column):.3f}" for c in COVERAGES)

    return (
        f"At pair coverage c = {listed(COVERAGES)} the training pairs number "
        f"{listed(data[c]['train pairs'] for c in COVERAGES)} and hold "
        f"{listed(data[c]['responses in the pairs'] for c in COVERAGES)} distinct responses "
        f"({listed(data[c]['responses per prompt in its pairs'] for c in COVERAGES)} per prompt) "
        f"of the space's {data[COVERAGES[0]]['responses in the space']}; the SFT reference puts "
        f"{reference('outside its pairs')} of its mass on a train prompt outside that prompt's "
        f"pairs, and {reference('outside S')} on a held-out prompt outside S."
    )


def summary(results: Path = RESULTS) -> str:
    """The README's sentences about the study, from its committed tables."""
    by = {row["cell"]: row for row in read_csv(results / "coverage_cells.csv")}
    data = {row["coverage"]: row for row in read_csv(results / "coverage_data.csv")}
    (timing,) = read_csv(results / "coverage_time.csv")
    pairs = comparisons(by, "outside its pairs")
    subset = comparisons(by, "outside S", COVERAGES[1:])
    reward = comparisons(by, "reward outside its pairs")
    signs = pairs["dpo-ppo"] + subset["dpo-ppo"]
    holds = ("is not settled by the intervals" if not any(signs) else "holds only in part"
             if 1 in signs and -1 in signs else "holds" if 1 in signs else "does not hold")
    return "\n".join([
        data_sentence(by, data),
        *(coverage_sentence(by, c) for c in COVERAGES),
        f"Xu et al.'s claim that DPO puts more mass than PPO on responses the data never shows "
        f"{holds} here. At matched strength ((β, kl_coef) = "
        f"{', '.join(f'({b}, {k})' for b, k in MATCHED)}) over the coverage levels, counting "
        f"only 95% intervals apart, DPO's mass outside its pairs is {_tally(pairs['dpo-ppo'])} "
        f"comparisons, and its mass outside S (c < 1) {_tally(subset['dpo-ppo'])}; outside S, "
        f"DPO's is {_tally(subset['dpo-ref'], REF)} cells, PPO's {_tally(subset['ppo-ref'], REF)}.",
        f"The gold reward of DPO's mass outside its pairs is {_tally(reward['dpo-ppo'])} "
        f"comparisons; DPO's is {_tally(reward['dpo-ref'], REF)}, PPO's "
        f"{_tally(reward['ppo-ref'], REF)}.",
        f"The {timing['runs']} runs took {float(timing['training span (s)']):.0f} s from the "
        f"first one's start to the last one's end ({timing['jobs']} at a time, one torch thread "
        f"each) and the exact measurement {float(timing['measurement (s)']):.0f} s more, on "
        f"{timing['cores']} cores shared with other jobs (15-minute load average "
        f"{timing['load average (15 min, at the end)']} at the end).",
    ])  # fmt: skip


# --------------------------------------------------------------------------------------- main
def measure(records: dict[Job, RunRecord], reference: RunRecord):
    """Every finished run's figures, the reference's per coverage, and the supports."""
    task = SyntheticTask.from_config(TaskConfig(**reference.config["data"]["task"]))
    oracles = Oracles(task)
    supports = []
    for coverage in COVERAGES:
        folders = {r.artifacts.get("data") for j, r in records.items()
                   if (j.method, j.coverage) == ("dpo", coverage) and r.status == FINISHED}
        if len(folders) != 1:
            raise RuntimeError(f"c={coverage}: the DPO runs read the pair sets {folders}")
        supports.append(oracles.support(coverage, folders.pop()))
    figures = {
        job: run_figures(record, oracles.masses(
            record.artifacts["policy"], [supports[COVERAGES.index(job.coverage)]])[0])
        for job, record in records.items() if record.status == FINISHED
    }  # fmt: skip
    ours = oracles.masses(reference.artifacts["policy"], supports)
    return figures, [run_figures(reference, masses) for masses in ours], supports


def cell_rows(figures: dict[Job, dict[str, float]], references: list[dict[str, float]]):
    """The reference's cells, then every method's (one per strength and coverage)."""
    return [cell_row(cell_name("sft", None, c), "sft", "", c, [ref])
            for c, ref in zip(COVERAGES, references, strict=True)] + [
        cell_row(cell_name(m, s, c), m, s, c, [figures.get(Job(m, s, c, n)) for n in SEEDS])
        for m in METHODS for s in METHODS[m][2] for c in COVERAGES]  # fmt: skip


def run_rows(figures: dict[Job, dict[str, float]], records: dict[Job, RunRecord]):
    return [{"cell": job.cell, "seed": str(job.seed), "status": records[job].status,
             **{k: f"{v:.6g}" for k, v in figures.get(job, {}).items()},
             "wall time (s)": f"{records[job].resources.get('wall_time_s', float('nan')):.1f}"}
            for job in JOBS]  # fmt: skip


def main() -> int:
    args, runs = study_arguments(__doc__.splitlines()[0], RESULTS)
    sft = Run("sft", runs / "sft", ("algo=sft", "data=exact", "seed=0", "upstream.seed=shared",
                                    *args.overrides))  # fmt: skip
    run_all([sft], runs / "cache", 1)
    reference = read_run(sft.folder)
    if reference.status != FINISHED:
        print(f"the SFT run failed: see {sft.folder}.log", file=sys.stderr)
        return 1
    jobs = [run_of(job, runs, reference.artifacts["policy"], args.overrides) for job in JOBS]
    run_all(jobs, runs / "cache", args.jobs)
    span = training_span([sft.folder, *(job.folder for job in jobs)])
    measuring = time.monotonic()
    records = {job: read_run(job.folder(runs)) for job in JOBS}
    figures, references, supports = measure(records, reference)
    cells = cell_rows(figures, references)
    measured = time.monotonic() - measuring
    write_csv(args.out / "coverage_cells.csv", cells)
    write_csv(args.out / "coverage_data.csv", [support_row(s) for s in supports])
    write_csv(args.out / "coverage_runs.csv", run_rows(figures, records))
    write_csv(args.out / "coverage_time.csv", [{
        "runs": str(len(jobs) + 1), "jobs": str(args.jobs), "training span (s)": f"{span:.0f}",
        "measurement (s)": f"{measured:.0f}", "cores": str(os.cpu_count()),
        "load average (15 min, at the end)": f"{os.getloadavg()[2]:.1f}"}])  # fmt: skip
    plot(cells, reference.frontier, args.out / "coverage.png")
    print(summary(args.out))
    return check_runs([reference, *records.values()])  # the reference finished (checked above)


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
        raise SystemExit(0)
    raise SystemExit(main())
