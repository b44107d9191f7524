"""Running a comparison's stages a few at a time, each after the stages whose artifacts it reads.

On a small machine a stage is mostly process start-up and a tiny model that one core trains
nearly as fast as two, so two stages on a core each finish sooner than one stage on both. Each
stage is still its own process (its peak memory its own); a stage starts once the stages it
reads from (its :data:`UPSTREAM`, of the same seed) have ended, and the artifact cache's locks
keep two processes from building one artifact twice whatever the order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

Result = TypeVar("Result")

UPSTREAM = {
    "reward": "sft", "ppo_gt": "sft", "dpo": "sft",
    **{stage: "reward" for stage in ("ppo", "rloo", "grpo", "reinforce", "online_dpo",
                                     "iterative_dpo")},
}
"""The stage whose artifact each stage reads (the reward model reads the SFT policy)."""


def dependencies(runs: Sequence[tuple[str, int | None]]) -> list[list[int]]:
    """For each (stage, seed), the positions of the runs it waits for: its upstream stage of
    the same seed, when the comparison runs it."""
    position = {run: index for index, run in enumerate(runs)}
    return [
        [position[upstream]] if (upstream := (UPSTREAM.get(stage), seed)) in position else []
        for stage, seed in runs
    ]


def run_in_lanes(
    count: int,
    waits_for: list[list[int]],
    run: Callable[[int], Result],
    lanes: int,
    idle: Callable[[], None] = lambda: None,
    poll_s: float = 0.2,
) -> list[Result]:
    """``run(i)`` for i in 0..count-1, at most ``lanes`` at a time, each once every
    ``waits_for[i]`` has ended (in index order among the ready ones); ``idle`` is called every
    ``poll_s`` while they run. Returns the results in index order."""
    lanes = max(1, lanes)
    results: dict[int, Result] = {}
    running: dict[Future, int] = {}
    pending = list(range(count))
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        while pending or running:
            for index in [i for i in pending if all(d in results for d in waits_for[i])]:
                if len(running) == lanes:
                    break
                pending.remove(index)
                running[pool.submit(run, index)] = index
            if not running:
                raise ValueError(f"runs {pending} wait for runs that never start")
            done, _ = wait(running, timeout=poll_s, return_when=FIRST_COMPLETED)
            for future in done:
                results[running.pop(future)] = future.result()
            idle()
    return [results[index] for index in range(count)]
