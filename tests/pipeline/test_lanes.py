"""Stages a few at a time, each after the stage whose artifact it reads."""

from __future__ import annotations

import threading
import time

import pytest

from leash.pipeline.lanes import dependencies, run_in_lanes

RUNS = [("sft", 0), ("reward", 0), ("ppo", 0), ("ppo_gt", 0), ("dpo", 0), ("sft", 1), ("dpo", 1)]


def test_each_stage_waits_for_its_upstream_stage_of_the_same_seed():
    assert dependencies(RUNS) == [[], [0], [1], [0], [0], [], [5]]
    assert dependencies([("dpo", None), ("ppo", None)]) == [[], []]  # upstream not run here


def test_lanes_run_in_parallel_after_their_dependencies_and_keep_the_order():
    lock, events, active, most = threading.Lock(), [], [0], [0]

    def run(index: int) -> str:
        with lock:
            events.append(("start", index))
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        with lock:
            events.append(("end", index))
            active[0] -= 1
        return RUNS[index][0]

    idles = []
    results = run_in_lanes(len(RUNS), dependencies(RUNS), run, 2, lambda: idles.append(1),
                           poll_s=0.01)
    assert results == [stage for stage, _ in RUNS]
    assert most[0] == 2 and idles
    for index, waits in enumerate(dependencies(RUNS)):
        for upstream in waits:
            assert events.index(("end", upstream)) < events.index(("start", index))


def test_one_lane_runs_in_order_and_an_error_is_raised():
    order = []
    assert run_in_lanes(3, [[], [], []], order.append, 1) == [None, None, None]
    assert order == [0, 1, 2]

    def fail(index: int) -> None:
        raise RuntimeError(f"stage {index}")

    with pytest.raises(RuntimeError, match="stage 0"):
        run_in_lanes(2, [[], [0]], fail, 2)
