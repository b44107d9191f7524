"""A run killed with SIGKILL and restarted with the same command ends as if never killed.

For SFT, the reward model, DPO and PPO: an uninterrupted run, and the same run killed (a real
SIGKILL: no exception handling, no teardown, no flush) mid-way between checkpoints or right
after one, then restarted in its folder. The final metrics (everything but timing and the
resumed process's own resource counts) and the CSV log must be identical.

Each run is a forked child of this process calling ``leash train``'s entry point: the same code
path as the command line, without paying the imports again for every run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from killing import forked_train

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]

SHORT = ("trainer.log_every_n_steps=1", "+trainer.limit_val_batches=1", "eval.num_samples=32")
RUNS = {  # algorithm -> overrides, kill points (optimizer steps)
    "sft": (("algo=sft", "algo.max_steps=12", "trainer.val_check_interval=6",
             "checkpoint_every=4"), (6,)),
    "reward": (("algo=reward", "algo.max_steps=12", "trainer.val_check_interval=6",
                "checkpoint_every=4"), (6,)),
    "dpo": (("algo=dpo", "algo.max_steps=12", "trainer.val_check_interval=6",
             "checkpoint_every=4"), (4, 10)),
    # 8 iterations of 2 x 2 optimizer steps; a checkpoint every 2 iterations.
    "ppo_gt": (("algo=ppo_gt", "algo.max_steps=8", "algo.ppo_epochs=2", "algo.num_minibatches=2",
                "trainer.val_check_interval=4", "checkpoint_every=2"), (20,)),
    # REINFORCE's moving baseline is state the checkpoint must carry.
    "reinforce": (("algo=reinforce", "algo.reward=gold", "algo.max_steps=8", "algo.ppo_epochs=2",
                   "algo.num_minibatches=2", "trainer.val_check_interval=4",
                   "checkpoint_every=2"), (20,)),
    # Two rounds of 6 steps: killed inside the second round, whose sampled set must come back.
    "iterative_dpo": (("algo=iterative_dpo", "algo.reward=gold", "algo.rounds=2",
                       "algo.steps_per_round=6", "trainer.val_check_interval=6",
                       "checkpoint_every=4"), (10,)),
}
UNSTABLE = ("time", "per_s", "memory", "mfu", "resources/")
"""Metric names that measure the process, not the training (a resumed process runs less)."""


def stable_metrics(run_dir: Path) -> dict:
    """The final metrics, less time and resources, and the loss trend (start, end, steps)."""
    written = json.loads((run_dir / "metrics.json").read_text())
    metrics = {k: v for k, v in written["metrics"].items() if not any(w in k for w in UNSTABLE)}
    return {**metrics, "divergence": written.get("divergence")}


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return [{k: v for k, v in row.items() if v and not any(w in k for w in UNSTABLE)}
            for row in rows]


@pytest.mark.parametrize("algorithm", list(RUNS))
def test_a_killed_run_resumes_into_the_run_that_would_have_happened(
    algorithm, shared_cache, sft_policy, tmp_path
):
    overrides, kill_steps = RUNS[algorithm]
    common = (*overrides, *SHORT, f"paths.cache_dir={shared_cache}", "logger=csv")
    if algorithm != "sft":
        common = (*common, f"upstream.sft_policy={sft_policy}")
    full = tmp_path / "full"
    assert forked_train(full, common) == 0, (tmp_path / "full.log").read_text()[-3000:]
    for step in kill_steps:
        killed = tmp_path / f"killed_at_{step}"
        if algorithm == "sft":  # a finished SFT run is cached: the rerun would reuse it
            common = (*common, f"paths.cache_dir={tmp_path / killed.name}-cache")
        kill = ("+callbacks.kill._target_=killing.KillAtStep", f"+callbacks.kill.step={step}")
        assert forked_train(killed, (*common, *kill)) == -9
        assert (killed / "checkpoints" / "last.ckpt").exists()
        log = tmp_path / f"{killed.name}.log"
        assert forked_train(killed, common) == 0, log.read_text()[-3000:]
        assert "resuming from" in log.read_text()
        assert stable_metrics(killed) == stable_metrics(full), step
        assert log_rows(killed) == log_rows(full), step


def test_a_stage_killed_mid_build_stores_the_weights_of_a_clean_build(tmp_path, monkeypatch):
    """The SFT stage a DPO run needs is killed mid-build; the rerun resumes it from its last
    checkpoint and caches exactly the weights an uninterrupted build cached."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), *sys.path]))  # for the child
    cache = tmp_path / "cache"
    stage = ["algo.max_steps=10", "checkpoint_every=4", "eval.enabled=false"]
    parent = ("algo=dpo", "algo.max_steps=2", *SHORT, f"paths.cache_dir={cache}")

    def dpo_with_stage(run: str, *extra: str) -> int:
        upstream = f"upstream.sft={json.dumps([*stage, *extra])}"
        return forked_train(tmp_path / run, (*parent, upstream))

    assert dpo_with_stage("clean") == 0, (tmp_path / "clean.log").read_text()[-3000:]
    (built,) = [folder for folder in (cache / "sft").iterdir() if folder.is_dir()]
    clean = sha256_of(built / "model.safetensors")
    shutil.rmtree(built)
    shutil.rmtree(cache / "runs" / f"sft-{built.name}")

    kill = ["+callbacks.kill._target_=killing.KillAtStep", "+callbacks.kill.step=6"]
    assert dpo_with_stage("killed", *kill) != 0
    assert not built.exists()  # nothing half-built is cached
    assert dpo_with_stage("rerun") == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    stage_log = (cache / "runs" / f"sft-{built.name}" / "cli.log").read_text()
    assert "resuming from" in stage_log
    assert sha256_of(built / "model.safetensors") == clean


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
