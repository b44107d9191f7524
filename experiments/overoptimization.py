"""Reward-model over-optimisation on `data=exact`, after Gao et al. (2022): proxy and gold vs √KL.

Four proxy reward models learn from 1/8, 1/4, 1/2 and all of the preference pairs: the task's
`data.task.pairs_per_prompt` at 2, 4, 8 and 16 (the default), set for the reward-model stage
alone (`upstream.reward`), so each has pairs on every train prompt. One SFT policy serves all
(trained first, then given as `upstream.sft_policy`: the pair count is a task setting, which
would otherwise key a new SFT stage), one reward model per fraction (`upstream.seed=shared`).
The *proxy* is what PPO optimises: the reward model's score, less `algo.missing_eos_penalty`
for a response cut without EOS. Against each: best-of-N from the SFT policy under the proxy,
exactly (`best_of_n_point` and `response_scores` of :mod:`leash.evaluation.best_of_n`),
N = 1 ... 4096 a factor √2 apart; and PPO (`algo=ppo`, its defaults) over seeds 0, 1, 2, every
evaluation (each `EVAL_EVERY` iterations) a point. Axes: d = √KL (exact KL(π‖π_ref), nats);
*gold* gain = exact gold reward minus the reference's; *proxy* gain likewise (exact for
best-of-N; for PPO read off `eval/rm_score` and `eval/eos_fraction`, 8 samples per held-out
prompt). Fits, least squares over every point of a curve (PPO's seeds pooled), both linear in α
and β: best-of-N R(d) = d(α − βd), RL R(d) = d(α − β ln d). The proxy's *ranking accuracy* is
exact (`ranking_accuracy`). A point above the exact frontier makes the script exit 1.

    python experiments/overoptimization.py --out experiments/results/overoptimization \\
        --runs /tmp/overoptimization_runs

Resumable (a finished run folder is not trained again); trailing arguments: Hydra overrides.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import transformers  # noqa: E402
from run_pool import Run, run_all, status_of, study_arguments, training_span, write_csv  # noqa: E402

from leash.config import ModelConfig, TaskConfig  # noqa: E402
from leash.data.tasks import SyntheticTask  # noqa: E402
from leash.evaluation.best_of_n import best_of_n_point, ranking_accuracy, response_scores  # noqa: E402
from leash.evaluation.oracle import ExactOracle  # noqa: E402
from leash.models.factory import load_causal_lm, load_scalar_model, load_tokenizer  # noqa: E402
from leash.report.runs import FrontierCurve, RunRecord, read_run  # noqa: E402
from leash.report.seeds import spread  # noqa: E402

FRACTIONS = {"1/8": 2, "1/4": 4, "1/2": 8, "all": 16}
"""Reward model -> preference pairs per train prompt."""
SEEDS = (0, 1, 2)
EVAL_EVERY = 3
"""PPO iterations between evaluations (`trainer.val_check_interval`)."""
BEST_OF = tuple(sorted({round(2 ** (k / 2)) for k in range(25)}))
"""N of best-of-N: 1 ... 4096, a factor √2 apart."""
TOLERANCE = 1e-4
"""How far above the exact frontier a point may lie (float error) before it is a bug."""
RESULTS = Path(__file__).parent / "results" / "overoptimization"


def fit(form: str, d: np.ndarray, gain: np.ndarray) -> tuple[float, float, float]:
    """(α, β, rmse) of Gao et al.'s functional form by linear least squares.

    ``form`` is ``bon`` (R = d(α − βd)) or ``rl`` (R = d(α − β ln d)); ``d`` = √KL > 0 for
    ``rl``; rmse is the root mean squared residual of the fitted curve."""
    d, gain = np.asarray(d, dtype=float), np.asarray(gain, dtype=float)
    if form == "rl" and (d <= 0).any():
        raise ValueError("the RL form needs d > 0 (ln d)")
    design = np.column_stack([d, -(d * d if form == "bon" else d * np.log(d))])
    (alpha, beta), *_ = np.linalg.lstsq(design, gain, rcond=None)
    rmse = float(np.sqrt(np.mean((design @ np.array([alpha, beta]) - gain) ** 2)))
    return float(alpha), float(beta), rmse


def curve(form: str, alpha: float, beta: float, d: np.ndarray) -> np.ndarray:
    """The fitted form at ``d`` (> 0)."""
    return d * (alpha - beta * (d if form == "bon" else np.log(d)))


def turning_point(form: str, alpha: float, beta: float) -> float:
    """The d where the fitted form peaks (dR/dd = 0): α/(2β) for ``bon``, exp(α/β − 1) for
    ``rl``; inf when β <= 0 (the fit never turns over)."""
    if beta <= 0:
        return math.inf
    return alpha / (2 * beta) if form == "bon" else math.exp(alpha / beta - 1)


FORMS = {"bon": "bon", "ppo": "rl"}
"""Method -> the functional form Gao et al. fit to it."""


@dataclasses.dataclass(frozen=True)
class Point:
    """One policy on the (√KL, gain) plane: a best-of-N or a PPO evaluation."""

    rm: str
    method: str  # bon or ppo
    seed: int | None
    at: int
    """N of best-of-N, or PPO's logged step of the evaluation."""
    kl: float
    gold: float  # exact gold reward
    gold_gain: float
    proxy_gain: float

    @property
    def d(self) -> float:
        return math.sqrt(max(self.kl, 0.0))


def penalty_of(record: RunRecord) -> float:
    """What PPO takes off the reward model's score of a response cut without EOS."""
    return float(record.config["algo"].get("missing_eos_penalty") or 0.0)


def ppo_points(record: RunRecord, rm: str, seed: int, reference_eos: float) -> list[Point]:
    """Every evaluation PPO logged (``logs/metrics.csv``), as a point; the proxy is the reward
    PPO optimises, its mean read off the samples' RM score and EOS fraction (the reference's:
    ``reference_eos``, the SFT run's fraction on the same samples)."""
    with (record.path / "logs" / "metrics.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("eval/exact_kl")]

    def value(row: dict[str, str], key: str) -> float:
        return float(row[f"eval/{key}"])

    return [
        Point(rm, "ppo", seed, int(row["step"]), value(row, "exact_kl"),
              value(row, "exact_gold_reward"),
              value(row, "exact_gold_reward") - value(row, "reference_exact_gold_reward"),
              value(row, "rm_score") - value(row, "reference_rm_score")
              + penalty_of(record) * (value(row, "eos_fraction") - reference_eos))
        for row in rows
    ]  # fmt: skip


def bon_points(record: RunRecord, rm: str) -> tuple[list[Point], float]:
    """Best-of-N under the reward the run's PPO optimises (its reward model's score less the
    missing-EOS penalty) on the evaluator's prompts, and that reward's ranking accuracy; the
    reference's exact gold reward must be the one PPO logged."""
    task = SyntheticTask.from_config(TaskConfig(**record.config["data"]["task"]))
    model = ModelConfig()
    tokenizer = load_tokenizer(record.artifacts["reference"], model)
    policy = load_causal_lm(record.artifacts["reference"], model, tokenizer, trainable=False)
    prompts = task.heldout_prompts[: record.config["eval"]["max_prompts"]]
    oracle = ExactOracle.for_task(task, prompts, tokenizer)
    reference = oracle.distribution(policy)
    rm_model = load_scalar_model(record.artifacts["reward_model"], model, tokenizer,
                                 trainable=False)  # fmt: skip
    scores = response_scores(oracle, rm_model) - penalty_of(record) * (~oracle.space.ended)
    start = best_of_n_point(reference, 1, scores)
    logged = record.metric("eval/reference_exact_gold_reward")
    if abs(start.gold_reward - logged) > 1e-5:
        raise RuntimeError(f"best-of-1 gold reward {start.gold_reward} is not the reference's "
                           f"{logged} that PPO logged: not the evaluator's prompts or policy")
    points = [best_of_n_point(reference, n, scores) for n in BEST_OF]
    return [Point(rm, "bon", None, p.n, p.kl, p.gold_reward, p.gold_reward - start.gold_reward,
                  p.score - start.score) for p in points], ranking_accuracy(reference, scores)


def runs_of(runs: Path, policy: str, extra: list[str]) -> dict[tuple[str, int], Run]:
    """PPO against each reward model, by (reward model, seed); seed by seed, so the first two
    runs build two reward models at once."""
    return {
        (rm, seed): Run(f"ppo rm={rm} seed={seed}", runs / f"pairs{k}" / f"seed_{seed}", (
            "algo=ppo", "data=exact", f"seed={seed}", "upstream.seed=shared",
            f"upstream.sft_policy={policy}", "eval.proxy_reward=true",
            f"trainer.val_check_interval={EVAL_EVERY}",
            f'upstream.reward=["data.task.pairs_per_prompt={k}",'
            '"trainer.val_check_interval=100"]', *extra))
        for seed in SEEDS for rm, k in FRACTIONS.items()
    }  # fmt: skip


def fit_columns(points: list[Point]) -> dict[str, str]:
    """α, β and rmse of each method's form for the gold and the proxy gain, the largest √KL
    the method reached, and where its gold fit turns over (blank: it does not)."""
    row = {}
    for method, form in FORMS.items():
        chosen = [p for p in points if p.method == method and p.d > 0]
        d = np.array([p.d for p in chosen])
        for score in ("gold", "proxy"):
            alpha, beta, rmse = fit(form, d, [getattr(p, f"{score}_gain") for p in chosen])
            row |= {f"{method} {score} alpha": f"{alpha:.4f}", f"{method} {score} beta":
                    f"{beta:.4f}", f"{method} {score} rmse": f"{rmse:.4f}"}  # fmt: skip
        turn = turning_point(form, *(float(row[f"{method} gold {c}"]) for c in ("alpha", "beta")))
        row[f"{method} max sqrt kl"] = f"{d.max():.4f}"
        row[f"{method} gold fit peak sqrt kl"] = "" if math.isinf(turn) else f"{turn:.4f}"
    for score in ("gold", "proxy"):  # PPO's evaluations under best-of-N's curve, same √KL
        bon = sorted((p.d, getattr(p, f"{score}_gain")) for p in points if p.method == "bon")
        inside = [p for p in points if p.method == "ppo" and p.d <= bon[-1][0]]
        curve_at = np.interp([p.d for p in inside], *zip(*bon, strict=True))
        below = sum(getattr(p, f"{score}_gain") < c for p, c in zip(inside, curve_at, strict=True))
        row[f"ppo {score} below bon"] = f"{below}/{len(inside)}"
    return row


def peak_columns(points: list[Point]) -> dict[str, str]:
    """Best-of-N's highest gold gain (its N, √KL) and at the largest N; PPO's highest and last
    gold gain, last proxy gain and last √KL, each a mean ± 95% t-interval over seeds."""
    bon = [p for p in points if p.method == "bon"]
    top, last = max(bon, key=lambda p: p.gold_gain), max(bon, key=lambda p: p.at)
    row = {"bon peak N": str(top.at), "bon peak sqrt kl": f"{top.d:.4f}",
           "bon peak gold gain": f"{top.gold_gain:.4f}", "bon last gold gain":
           f"{last.gold_gain:.4f}", "bon last proxy gain": f"{last.proxy_gain:.4f}"}  # fmt: skip
    seeds = [[p for p in points if p.method == "ppo" and p.seed == s] for s in SEEDS]
    tops = [max(t, key=lambda p: p.gold_gain) for t in seeds if t]
    ends = [max(t, key=lambda p: p.at) for t in seeds if t]
    for name, values in {
        "ppo peak sqrt kl": [p.d for p in tops], "ppo peak gold gain": [p.gold_gain for p in tops],
        "ppo last sqrt kl": [p.d for p in ends], "ppo last gold gain": [p.gold_gain for p in ends],
        "ppo last proxy gain": [p.proxy_gain for p in ends]}.items():  # fmt: skip
        figure = spread(values)
        row[f"{name} mean"] = f"{figure.mean:.4f}"
        row[f"{name} ci95"] = "" if figure.ci95 is None else f"{figure.ci95:.4f}"
    return row


def result_rows(points: list[Point], accuracy: dict[str, float], pairs: dict[str, int]):
    """One row per reward model: its data, its ranking accuracy, the fits, the peaks."""
    return [{"reward model": rm, "pairs": str(pairs[rm]),
             "ranking accuracy": f"{accuracy[rm]:.4f}",
             **fit_columns([p for p in points if p.rm == rm]),
             **peak_columns([p for p in points if p.rm == rm])} for rm in FRACTIONS]  # fmt: skip


def plot(points: list[Point], rows: list[dict[str, str]], frontier: FrontierCurve, path: Path):
    """Gold (top) and proxy (bottom) gain against √KL, one column per reward model: best-of-N
    dashed (its fit dotted), PPO's evaluations as points with the fitted RL form solid; the
    exact optimum's gold gain in black."""
    figure, axes = plt.subplots(2, len(FRACTIONS), figsize=(4 * len(FRACTIONS), 7.5),
                                sharex=True, sharey="row")  # fmt: skip
    top = max(p.d for p in points)
    optimum = [(math.sqrt(k), r - frontier.reward[0]) for k, r in
               zip(frontier.kl, frontier.reward, strict=True) if math.sqrt(k) <= top]
    for column, (rm, row) in enumerate(zip(FRACTIONS, rows, strict=True)):
        colour = f"C{column}"
        for line, score in enumerate(("gold", "proxy")):
            ax = axes[line, column]
            if score == "gold":
                ax.plot(*zip(*optimum, strict=True), color="black", lw=1, label="exact optimum")
            bon = [p for p in points if p.rm == rm and p.method == "bon"]  # in order of N
            ax.plot([p.d for p in bon], [getattr(p, f"{score}_gain") for p in bon], ls="--",
                    marker=".", color=colour, label="best-of-N (exact)")
            ppo = [p for p in points if p.rm == rm and p.method == "ppo"]
            ax.scatter([p.d for p in ppo], [getattr(p, f"{score}_gain") for p in ppo], s=10,
                       color=colour, alpha=0.5, label="PPO evaluations (3 seeds)")
            for method, style in (("bon", ":"), ("ppo", "-")):
                alpha, beta = (float(row[f"{method} {score} {c}"]) for c in ("alpha", "beta"))
                grid = np.linspace(1e-3, float(row[f"{method} max sqrt kl"]), 200)
                ax.plot(grid, curve(FORMS[method], alpha, beta, grid), ls=style, color=colour,
                        lw=1.5, alpha=0.8, label=f"{method} fit ({FORMS[method]} form)")
            ax.set_title(f"RM on {rm} of the pairs: {score}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlabel("√KL (nats^½)" if line else "")
    for line, (label, corner) in enumerate((("gold reward", "lower right"),
                                            ("proxy RM score", "upper left"))):  # fmt: skip
        axes[line, 0].set_ylabel(f"{label} gain")
        axes[line, 0].legend(fontsize=7, loc=corner)
    figure.suptitle("Over-optimisation on data=exact: gain over the SFT policy against √KL")
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _read(name: str, results: Path) -> list[dict[str, str]]:
    with (results / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _last_load(results: Path) -> str:
    """The load average the last training invocation recorded, if any."""
    path = results / "overoptimization_time.csv"
    return _read(path.name, results)[0].get("load average", "") if path.is_file() else ""


def _trend(values: list[float]) -> str:
    """How a figure moves from the smallest reward model to the largest."""
    way = "rises" if values[-1] > values[0] else "falls"
    steady = (np.sign(np.diff(values)) == (1 if way == "rises" else -1)).all()
    return f"{way} with every doubling" if steady else f"{way} overall, not at every doubling"


def _paper_lines(rows: list[dict[str, str]]) -> list[str]:
    """Gao et al.'s findings set against these results, each said to hold or not."""

    def column(name: str) -> list[float]:
        return [float(row[name]) for row in rows]

    def turns(method: str) -> int:  # gold fits that peak inside the range the method reached
        return sum(row[f"{method} gold fit peak sqrt kl"] != "" and float(
            row[f"{method} gold fit peak sqrt kl"]) <= float(row[f"{method} max sqrt kl"])
            for row in rows)  # fmt: skip

    def below(score: str) -> str:
        counts = [tuple(map(int, row[f"ppo {score} below bon"].split("/"))) for row in rows]
        return f"{sum(b for b, _ in counts)}/{sum(n for _, n in counts)}"

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.3f}" for v in values)

    ppo_peak, bon_peak = column("ppo peak gold gain mean"), column("bon peak gold gain")
    ppo_beta, bon_beta = column("ppo gold beta"), column("bon gold beta")
    accuracy = column("ranking accuracy")
    return [
        f"Against Gao et al. (2022), who find the gold score rising then falling while the proxy "
        f"rises: the fitted gold curve turns over within the √KL reached for best-of-N under "
        f"{turns('bon')}/{len(rows)} reward models and for PPO under {turns('ppo')}/{len(rows)}.",
        f"The paper finds the coefficients moving smoothly with the reward model's size and "
        f"more data helping; here, one reward model per pair count, the ranking accuracy "
        f"{_trend(accuracy)} ({listed(accuracy)}), PPO's peak gold gain {_trend(ppo_peak)} "
        f"({listed(ppo_peak)}) and best-of-N's {_trend(bon_peak)} ({listed(bon_peak)}); the gold "
        f"fit's over-optimisation coefficient β {_trend(ppo_beta)} for PPO ({listed(ppo_beta)}) "
        f"and {_trend(bon_beta)} for best-of-N ({listed(bon_beta)}), where the paper has it fall "
        "as the reward model grows.",
        f"The paper finds RL slower than best-of-N in KL: here {below('proxy')} of PPO's "
        f"evaluations lie below best-of-N's exact proxy curve at the same √KL and "
        f"{below('gold')} below its gold curve.",
    ]


def summary(results: Path = RESULTS) -> str:
    """The READMEs' sentences about over-optimisation, from the committed tables."""
    rows = _read("overoptimization_results.csv", results)
    (timing,) = _read("overoptimization_time.csv", results)

    def each(column: str, fmt: str) -> str:
        return ", ".join(f"{row['reward model']} {float(row[column]):{fmt}}" for row in rows)

    return "\n".join([
        f"The proxies (reward models trained on {', '.join(row['reward model'] for row in rows)} "
        f"of the pairs, {', '.join(row['pairs'] for row in rows)} pairs, less the missing-EOS "
        f"penalty) order two fresh samples of the SFT policy as the gold reward does with "
        f"probability {each('ranking accuracy', '.3f')}.",
        "PPO's gold gain over the SFT policy, highest → last, mean over 3 seeds: "
        + ", ".join(f"{row['reward model']} {float(row['ppo peak gold gain mean']):.3f} → "
                    f"{float(row['ppo last gold gain mean']):.3f} ± "
                    f"{float(row['ppo last gold gain ci95']):.3f}" for row in rows)
        + f"; its proxy gain at the end: {each('ppo last proxy gain mean', '.2f')}.",
        "Best-of-N's gold gain peaks at N = " + ", ".join(
            f"{row['bon peak N']} ({row['reward model']}, {float(row['bon peak gold gain']):.3f})"
            for row in rows) + f"; at N = {BEST_OF[-1]} it is {each('bon last gold gain', '.3f')}"
        f" and its proxy gain {each('bon last proxy gain', '.2f')}.",
        "Fitted gold coefficients (α, β), best-of-N d(α − βd) and PPO d(α − β ln d): " + ", ".join(
            f"{row['reward model']} ({float(row['bon gold alpha']):.3f}, "
            f"{float(row['bon gold beta']):.3f}) and ({float(row['ppo gold alpha']):.3f}, "
            f"{float(row['ppo gold beta']):.3f})" for row in rows) + ".",
        *_paper_lines(rows),
        f"Its {timing['runs']} runs took {float(timing['training span (s)']) / 60:.1f} min from "
        f"the first start to the last end ({timing['jobs']} at a time, one thread each"
        + (f", the 2 cores shared: load average {timing['load average']} as training ended"
           if timing["load average"] else "")
        + f"), the exact best-of-N, fits and figure {float(timing['analysis (s)']) / 60:.1f} min "
        "more.",
    ])


def markdown(rows: list[dict[str, str]], note: str) -> str:
    """The results table (every column of `overoptimization_results.csv`), then the summary."""
    table = [list(rows[0]), ["---"] * len(rows[0])] + [list(row.values()) for row in rows]
    return "\n".join(["# Reward-model over-optimisation on data=exact", "", note, ""]
                     + ["| " + " | ".join(cells) + " |" for cells in table]) + "\n\n"  # fmt: skip


def analyse(runs: dict[tuple[str, int], Run], policy: str, reference_eos: float):
    """Every point of the study, each reward model's ranking accuracy, and the points above the
    exact frontier (named)."""
    points, accuracy, above = [], {}, []

    def above_frontier(found: list[Point], curve_of: FrontierCurve) -> list[Point]:
        return [p for p in found if p.gold > curve_of.reward_at(p.kl) + TOLERANCE]

    for (rm, seed), run in runs.items():
        record = read_run(run.folder)
        if record.artifacts.get("reference") != policy:
            raise RuntimeError(f"{run.folder} did not start from the shared SFT policy {policy}")
        ppo = ppo_points(record, rm, seed, reference_eos)
        above += [f"{run.name} step {p.at}" for p in above_frontier(ppo, record.frontier)]
        points += ppo
        if rm not in accuracy:
            bon, accuracy[rm] = bon_points(record, rm)
            above += [f"best-of-{p.at} rm={rm}" for p in above_frontier(bon, record.frontier)]
            points += bon
    return points, accuracy, above


def main() -> int:
    args, runs_dir = study_arguments(__doc__.splitlines()[0], RESULTS)
    sft = Run("sft", runs_dir / "sft", ("algo=sft", "data=exact", "seed=0", *args.overrides))
    run_all([sft], runs_dir / "cache", 1)
    if status_of(sft.folder) != "finished":
        print(f"the SFT run failed: see {sft.folder}.log", file=sys.stderr)
        return 1
    policy = json.loads((sft.folder / "artifacts.json").read_text())["cached_policy"]
    runs = runs_of(runs_dir, policy, args.overrides)
    trained = run_all(list(runs.values()), runs_dir / "cache", args.jobs)
    # the machine's 5-minute load average as training ended (a rerun that trained nothing
    # keeps the figure of the invocation that did)
    load = f"{os.getloadavg()[1]:.1f}" if trained > 0 else _last_load(args.out)
    folders = [sft.folder] + [run.folder for run in runs.values()]
    failed = [str(folder) for folder in folders if status_of(folder) != "finished"]
    if failed:
        print(f"runs without metrics.json: {failed}; see their .log files", file=sys.stderr)
        return 1
    start = time.monotonic()
    transformers.utils.logging.disable_progress_bar()  # no bar per local model load
    reference_eos = read_run(sft.folder).metric("eval/eos_fraction")
    points, accuracy, above = analyse(runs, policy, reference_eos)
    task = SyntheticTask.from_config(TaskConfig(**read_run(sft.folder).config["data"]["task"]))
    pairs = {rm: k * len(task.train_prompts) for rm, k in FRACTIONS.items()}
    rows = result_rows(points, accuracy, pairs)
    write_csv(args.out / "overoptimization_results.csv", rows)
    write_csv(args.out / "overoptimization_points.csv",
              [{**dataclasses.asdict(p), "sqrt kl": p.d} for p in points])  # fmt: skip
    plot(points, rows, read_run(folders[1]).frontier, args.out / "overoptimization.png")
    span = training_span(folders)
    write_csv(args.out / "overoptimization_time.csv", [{
        "runs": len(folders), "jobs": args.jobs, "training span (s)": f"{span:.0f}",
        "analysis (s)": f"{time.monotonic() - start:.0f}", "load average": load}])  # fmt: skip
    note = (f"{len(folders)} runs (SFT, then PPO: {len(SEEDS)} seeds × {len(FRACTIONS)} reward "
            f"models, `upstream.seed=shared`, {args.jobs} at a time, 1 torch thread each): "
            f"{span:.0f} s from the first run's start to the last one's end. Runs: `{runs_dir}`.")
    (args.out / "overoptimization.md").write_text(markdown(rows, note) + summary(args.out) + "\n")
    print(summary(args.out))
    if above:
        print(f"ABOVE THE OPTIMAL FRONTIER (a bug): {above}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        print(summary())
        raise SystemExit(0)
    raise SystemExit(main())
