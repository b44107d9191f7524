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
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live

from leash.pipeline.board import LOG_FILE, StageBoard, StageRow
from leash.pipeline.compose import compose_train
from leash.pipeline.lanes import dependencies, run_in_lanes
from leash.pipeline.launcher import run_train
from leash.pipeline.overrides import override_key, route_by_prefix

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


def run_stage(stage: str, overrides: list[str], run_dir: Path, quiet: bool = False
              ) -> StageResult:
    """``leash train algo=<stage> ...`` in a child process; its output streams live, or with
    ``quiet`` goes to ``<run>/console.log``."""
    started = time.perf_counter()
    log_file = run_dir / LOG_FILE if quiet else None
    child = run_train([f"algo={stage}", *overrides], run_dir, log_file)
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
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="stages at a time, each after the stage it reads from (default: "
                        "2 on a CPU run with 2 or more CPUs, else 1); the CPUs are shared out")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="stream every stage's own log (default: a live view of the "
                        "stages; each stage's log is in <run>/console.log)")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides for every stage, or <stage>.<key>=value for one; "
                        "seeds=[0,1,2] runs every stage once per seed")
    return parser


SEEDS_KEY = "seeds="


def with_threads(overrides: list[str], threads: int | None, lanes: int = 1) -> list[str]:
    """The overrides with one ``threads=`` for every stage (the user's own, else ``threads``,
    else ``$OMP_NUM_THREADS``, else the CPUs this process may use, shared out over the
    ``lanes`` stages that run at once): every stage gets the same count, so no comparison is
    confounded by it (see :mod:`leash.runtime`)."""
    if any(o.startswith("threads=") for o in overrides):
        return overrides
    count = threads if threads is not None else max(1, default_threads() // lanes)
    return [*overrides, f"threads={count}"]


def default_lanes(jobs: int | None, verbose: bool, on_cpu: bool) -> int:
    """Stages at a time: ``--jobs``; else 2 on a CPU run with 2 or more CPUs (one core each
    trains the tiny default model nearly as fast as two, and start-up is most of a stage),
    else 1 (GPU stages would share one device). A verbose run streams one stage at a time."""
    if verbose:
        return 1
    if jobs is not None:
        return max(1, jobs)
    return 2 if on_cpu and default_threads() >= 2 else 1


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


def stages_pushing_to_one_repo(
    routed: dict[str, list[str]], stages: tuple[str, ...]
) -> tuple[str, list[str]] | None:
    """A Hub repository that ``hub.push=true`` would have two or more stages push to, and
    those stages (each stage's last ``hub.push`` and ``hub.repo_id`` count), or None."""
    repos: dict[str, list[str]] = {}
    for stage in stages:
        settings = {override_key(o): o.split("=", 1)[1] for o in routed[stage] if "=" in o}
        if settings.get("hub.push", "false").lower() == "true":
            repos.setdefault(settings.get("hub.repo_id", "the configured one"), []).append(stage)
    return next(((repo, names) for repo, names in repos.items() if len(names) > 1), None)


def main(argv: list[str]) -> int:
    """Run the stages (for each seed), print the comparison table; 0 when every stage finished."""
    args = _parser().parse_intermixed_args(argv)  # options may come between overrides
    try:
        seeds, overrides = pop_seeds(args.overrides)
    except ValueError as error:
        print(f"leash compare: {error}", file=sys.stderr)
        return 2
    stages = tuple(s for s in args.stages.split(",") if s)
    known = STAGES + OPTIONAL_STAGES
    unknown = sorted(set(stages) - set(known))
    if unknown:
        print(f"leash compare: unknown stages {unknown}; choose from {known}", file=sys.stderr)
        return 2
    console = Console()
    sft = compose_train(route_by_prefix(overrides, known)["sft"])
    lanes = default_lanes(args.jobs, args.verbose, sft.trainer.accelerator == "cpu")
    routed = route_by_prefix(with_threads(overrides, args.threads, lanes), known)
    clash = stages_pushing_to_one_repo(routed, stages)
    if clash:
        print(f"leash compare: hub.push=true would push {', '.join(clash[1])} to one Hub "
              f"repository, {clash[0]}: push one stage (e.g. dpo.hub.push=true "
              "dpo.hub.repo_id=NAME), or give each its own <stage>.hub.repo_id", file=sys.stderr)
        return 2
    if sft.data.source != "task":
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
    results = _run_stages(console, runs, routed, folder, args.verbose, lanes)
    console.rule("[bold]leash compare[/]: results")
    from leash.report.main import main as report_main

    report_main([str(folder)])
    _log_summary_to_wandb(folder, overrides)
    return 0 if all(r.ok for r in results) else 1


def _run_stages(
    console: Console, runs: list[tuple[str, int | None]], routed: dict[str, list[str]],
    folder: Path, verbose: bool, lanes: int,
) -> list[StageResult]:
    """Run each (stage, seed) in its folder, ``lanes`` at a time, each after its upstream stage
    (:mod:`leash.pipeline.lanes`). A terminal shows a live board of the stages; a pipe gets a
    line per stage as it ends; ``verbose`` streams every stage's log, one stage at a time."""
    rows = [StageRow(stage if seed is None else f"{stage}, seed {seed}",
                     folder / stage if seed is None else folder / f"seed_{seed}" / stage)
            for stage, seed in runs]
    board = StageBoard(rows, f"leash compare: {len(runs)} stages in {folder}")
    live = Live(board, console=console, auto_refresh=False) if console.is_terminal else None
    if verbose or live is None:
        console.print(board.title, style="bold", markup=False, soft_wrap=True)
    live = None if verbose else live

    def run(index: int) -> StageResult:
        (stage, seed), row = runs[index], rows[index]
        if verbose:
            console.rule(f"[bold]leash compare[/]: {row.label}")
        board.start(row)
        overrides = [*STAGE_DEFAULTS.get(stage, []), *routed[stage]]
        overrides += [] if seed is None else [f"seed={seed}"]
        result = run_stage(stage, overrides, row.run_dir, not verbose)
        board.finish(row, result.ok, result.seconds)
        if live is None:
            console.print(*board.cells(row), soft_wrap=True)
        return result

    redraw = live.refresh if live is not None else (lambda: None)
    with live if live is not None else nullcontext():
        results = run_in_lanes(len(runs), dependencies(runs), run, lanes, redraw)
        redraw()
    if not verbose:
        _show_failures(console, rows)
    return results


FAILED_LOG_LINES = 15
"""Lines of a failed stage's log the board prints below itself."""


def _show_failures(console: Console, rows: list[StageRow]) -> None:
    """The end of each failed stage's log, and where the whole of it is."""
    for row in rows:
        if row.state != "failed":
            continue
        log_file = row.run_dir / LOG_FILE
        lines = log_file.read_text(errors="replace").splitlines() if log_file.exists() else []
        console.rule(f"[red]{row.label} failed[/]: the end of {log_file}")
        console.print("\n".join(lines[-FAILED_LOG_LINES:]), markup=False, highlight=False)


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
