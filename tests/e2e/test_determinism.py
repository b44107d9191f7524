"""The same config and seed at the same thread count give bit-identical metrics, for every
algorithm, and each run records its thread count, versions and device (``runtime``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from killing import forked_train

pytestmark = pytest.mark.slow

SHORT = ("threads=1", "+trainer.limit_val_batches=1", "eval.num_samples=16",
         "trainer.val_check_interval=3")
RUNS = {
    "sft": ("algo=sft", "algo.max_steps=6"),
    "reward": ("algo=reward", "algo.max_steps=6"),
    "dpo": ("algo=dpo", "algo.max_steps=6"),
    "ppo": ("algo=ppo", "algo.max_steps=3", "algo.ppo_epochs=1",
            'upstream.reward=["algo.max_steps=6"]'),
    "ppo_gt": ("algo=ppo_gt", "algo.max_steps=3", "algo.ppo_epochs=1"),
    "rloo": ("algo=rloo", "algo.reward=gold", "algo.max_steps=3", "algo.ppo_epochs=1"),
    "grpo": ("algo=grpo", "algo.reward=gold", "algo.max_steps=3", "algo.ppo_epochs=1"),
    "online_dpo": ("algo=online_dpo", "algo.reward=gold", "algo.max_steps=6"),
    "iterative_dpo": ("algo=iterative_dpo", "algo.reward=gold", "algo.rounds=2",
                      "algo.steps_per_round=3"),
}
MEASURES_THE_PROCESS = ("time", "per_s", "memory", "mfu", "resources/")


def written(run_dir: Path) -> tuple[dict, dict]:
    """The final metrics of a run (less those that time or weigh the process) and its runtime."""
    payload = json.loads((run_dir / "metrics.json").read_text())
    metrics = {k: v for k, v in payload["metrics"].items()
               if not any(word in k for word in MEASURES_THE_PROCESS)}
    return metrics, payload["runtime"]


@pytest.mark.parametrize("algorithm", list(RUNS))
def test_two_runs_of_one_config_give_the_same_metrics(algorithm, shared_cache, sft_policy,
                                                      tmp_path):
    common = (*RUNS[algorithm], *SHORT, "trainer.log_every_n_steps=1")
    if algorithm != "sft":
        common = (*common, f"upstream.sft_policy={sft_policy}")
    results = []
    for attempt in ("first", "second"):
        # SFT runs store their policy in the cache: a second run there would only reuse it.
        cache = tmp_path / f"{attempt}-cache" if algorithm == "sft" else shared_cache
        run = tmp_path / attempt
        code = forked_train(run, (*common, f"paths.cache_dir={cache}"))
        assert code == 0, (tmp_path / f"{attempt}.log").read_text()[-3000:]
        results.append(written(run))
    (first, runtime), (second, _) = results
    assert first and first == second
    assert runtime["threads"] == 1 and runtime["device"] == "cpu"
    assert runtime["versions"]["torch"] and runtime["versions"]["leash"]
