"""``leash compare``: SFT -> reward model -> PPO, PPO-GT, DPO on the same pairs, one table.

Every stage is one ``leash train`` in its own process (so each peak memory is that stage's own),
all from the same SFT policy, on the same preference pairs and held-out prompts, reusing the
artifact cache: a second comparison with the same upstream config trains no SFT and no reward
model again. Then the runs are aggregated by :mod:`leash.report` into report.md, results.csv,
results.json and frontier.png.

Overrides without a stage prefix go to every stage (``model=gpt2 data=hh_rlhf trainer=gpu``);
``<stage>.<key>=value`` goes to one stage only (``dpo.algo.beta=0.3``, ``ppo.algo.kl_coef=0.1``).

``seeds=[0,1,2]`` runs every stage once per seed (``<folder>/seed_<s>/<stage>``); the report then
adds each method's mean and 95% t-interval over its seeds (:mod:`leash.report.seeds`). Whether
the seeds share their upstream data is ``upstream.seed`` (``per_run`` by default, or ``shared``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console

from leash.pipeline.compose import compose_train
from leash.pipeline.launcher import run_train
from leash.pipeline.overrides import route_by_prefix

STAGES = ("sft", "reward", "ppo", "ppo_gt", "dpo")
"""Stage names, in order (the default run): each is also the `algo` option it runs."""

OPTIONAL_STAGES = ("rloo", "grpo", "reinforce", "online_dpo", "iterative_dpo")
"""Stages ``--stages`` may add, not run by default: the online loop's critic-free estimators,
and on-policy and iterative DPO (pairs sampled from the policy); all scored by the learned
reward model like ``ppo``."""

NEEDS_GOLD_REWARD = {"ppo_gt"}
"""Stages that only make sense on a built-in task (they score with its gold reward)."""

STAGE_DEFAULTS = {stage: ["eval.proxy_reward=true"] for stage in ("ppo_gt", "dpo")}
"""Overrides each stage starts from (the user's come after them): every policy trained after
the reward model is scored by it too, on a built-in task as on real data."""


@dataclass(frozen=True)
class StageResult:
    stage: str
    run_dir: Path
    seconds: float
    ok: bool


def _uses_task_data(overrides: list[str]) -> bool:
    """Whether the composed config's data is a built-in task (gold reward available)."""
    return compose_train(overrides).data.source == "task"


def run_stage(stage: str, overrides: list[str], run_dir: Path) -> StageResult:
    """``leash train algo=<stage> ...`` in a child process, its output streamed live."""
    started = time.perf_counter()
    child = run_train([f"algo={stage}", *overrides], run_dir)
    return StageResult(stage, run_dir, time.perf_counter() - started, child.code == 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leash compare",
        description="Run SFT, the reward model, PPO, PPO-GT and DPO from one SFT policy on the "
        "same preference pairs, and report what each costs and buys.",
    )
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES + OPTIONAL_STAGES)} "
                        f"(default {','.join(STAGES)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="comparison folder (default: outputs/compare/<time>)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of every stage (default: $OMP_NUM_THREADS when set, "
                        "else the CPUs this process may use); a `threads=` override wins")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every stage, or <stage>.<key>=value for one; "
                        "seeds=[0,1,2] runs every stage once per seed")
    return parser


SEEDS_KEY = "seeds="


def with_threads(overrides: list[str], threads: int | None) -> list[str]:
    """The overrides with one ``threads=`` for every stage (the user's own, else ``threads``,
    else ``$OMP_NUM_THREADS``, else the CPUs this process may use): stages that run alone get
    the same count, so no comparison is confounded by it (see :mod:`leash.runtime`)."""
    if any(o.startswith("threads=") for o in overrides):
        return overrides
    count = threads if threads is not None else default_threads()
    return [*overrides, f"threads={count}"]


def default_threads() -> int:
    """``$OMP_NUM_THREADS`` when it holds a positive count (the user, or a scheduler, capped
    the process), else the number of CPUs this process may run on."""
    text = os.environ.get("OMP_NUM_THREADS", "")
    return int(text) if text.isdigit() and int(text) > 0 else len(os.sched_getaffinity(0))


def pop_seeds(overrides: list[str]) -> tuple[list[int] | None, list[str]]:
    """The ``seeds=[0,1,2]`` (or ``seeds=0,1,2``) of the overrides, and the other overrides."""
    found = [o for o in overrides if o.startswith(SEEDS_KEY)]
    rest = [o for o in overrides if not o.startswith(SEEDS_KEY)]
    if not found:
        return None, rest
    text = found[-1].removeprefix(SEEDS_KEY).strip("[] ")
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"seeds: expected a list of integers like seeds=[0,1,2], got {text!r}"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds: expected distinct integers >= 0, got {text!r}")
    return seeds, rest


def main(argv: list[str]) -> int:
    """Run the stages (for each seed), print the comparison table; 0 when every stage finished."""
    args = _parser().parse_args(argv)
    try:
        seeds, overrides = pop_seeds(args.overrides)
    except ValueError as error:
        print(f"leash compare: {error}", file=sys.stderr)
        return 2
    overrides = with_threads(overrides, args.threads)
    stages = tuple(s for s in args.stages.split(",") if s)
    known = STAGES + OPTIONAL_STAGES
    unknown = sorted(set(stages) - set(known))
    if unknown:
        print(f"leash compare: unknown stages {unknown}; choose from {known}", file=sys.stderr)
        return 2
    console = Console()
    routed = route_by_prefix(overrides, known)
    if not _uses_task_data(routed["sft"]):
        skipped = [s for s in stages if s in NEEDS_GOLD_REWARD]
        stages = tuple(s for s in stages if s not in NEEDS_GOLD_REWARD)
        if skipped:
            console.print(f"skipping {', '.join(skipped)}: the data has no gold reward")
    outputs = Path(os.environ.get("LEASH_OUTPUT_DIR", "outputs"))
    folder = args.out or outputs / "compare" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    folder.mkdir(parents=True, exist_ok=True)
    runs = [(stage, None) for stage in stages] if seeds is None else [
        (stage, seed) for seed in seeds for stage in stages
    ]
    results = _run_stages(console, runs, routed, folder)
    console.rule("[bold]leash compare[/]: results")
    from leash.report.main import main as report_main

    report_main([str(folder)])
    for result in results:
        console.print(f"  {result.stage:<7} {result.seconds:6.0f} s  {result.run_dir}",
                      markup=False)
    _log_summary_to_wandb(folder, overrides)
    return 0 if all(r.ok for r in results) else 1


def _run_stages(
    console: Console, runs: list[tuple[str, int | None]], routed: dict[str, list[str]],
    folder: Path,
) -> list[StageResult]:
    """Run each (stage, seed) in order, in its folder, saying how each one ended."""
    results = []
    for number, (stage, seed) in enumerate(runs, start=1):
        where = stage if seed is None else f"{stage}, seed {seed}"
        console.rule(f"[bold]leash compare[/] stage {number}/{len(runs)}: {where}")
        stage_overrides = [*STAGE_DEFAULTS.get(stage, []), *routed[stage]]
        if seed is None:
            result = run_stage(stage, stage_overrides, folder / stage)
        else:
            run_dir = folder / f"seed_{seed}" / stage
            result = run_stage(stage, [*stage_overrides, f"seed={seed}"], run_dir)
        results.append(result)
        verdict = "[green]finished[/]" if result.ok else "[red]failed[/]"
        console.print(f"stage {where} {verdict} in {result.seconds:.0f} s")
    return results


def _log_summary_to_wandb(folder: Path, overrides: list[str]) -> None:
    """With ``logger=wandb`` (or a list holding it), one extra W&B run holds the table."""
    if not any(o.startswith("logger=") and "wandb" in o for o in overrides):
        return
    import csv

    import wandb

    from leash.logging_wandb import select_mode

    with (folder / "results.csv").open() as handle:
        rows = list(csv.reader(handle))
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "leash"), name="compare-summary",
                     group=f"compare/{folder.name}", mode=select_mode(), dir=str(folder),
                     job_type="compare")
    try:
        run.log({"comparison": wandb.Table(columns=rows[0], data=rows[1:])})
        frontier = folder / "frontier.png"
        if frontier.exists():
            run.log({"frontier": wandb.Image(str(frontier))})
    finally:
        run.finish()
