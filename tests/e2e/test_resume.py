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
import json
import os
import sys
from pathlib import Path

import pytest

import leash.cli
import leash.pipeline.recipes  # noqa: F401  (imported once here, not in every forked run)

pytestmark = pytest.mark.slow

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
}
UNSTABLE = ("time", "per_s", "memory", "mfu", "resources/")
"""Metric names that measure the process, not the training (a resumed process runs less)."""


def forked_train(run_dir: Path, overrides: tuple[str, ...]) -> int:
    """``leash train <overrides>`` in a forked child; its exit status (-9 when killed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            log_path = run_dir.parent / f"{run_dir.name}.log"
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(log, 1)
            os.dup2(log, 2)
            sys.stdout = sys.stderr = open(log, "w", buffering=1, closefd=False)  # not pytest's
            leash.cli.main(["train", *overrides, f"hydra.run.dir={run_dir}"])
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported through the exit status and the log
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def stable_metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if not any(word in k for word in UNSTABLE)}


def log_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return [{k: v for k, v in row.items() if v and not any(w in k for w in UNSTABLE)}
            for row in rows]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for every run here: the preference pairs are generated once."""
    return tmp_path_factory.mktemp("resume-cache")


@pytest.fixture(scope="module")
def sft_policy(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A short SFT run whose policy every other algorithm here starts from."""
    run = tmp_path_factory.mktemp("resume-sft") / "run"
    overrides = ("algo=sft", "algo.max_steps=20", "eval.enabled=false",
                 f"paths.cache_dir={shared_cache}")
    assert forked_train(run, overrides) == 0, (run.parent / "run.log").read_text()[-3000:]
    return run / "policy"


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
