"""`leash train algo=sft` end to end: a loadable checkpoint, metrics.json, caching, resuming."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

pytestmark = pytest.mark.slow


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", "algo=sft", "debug=fast",
         f"hydra.run.dir={run_dir}", *overrides],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_sft_leaves_a_hugging_face_checkpoint_and_metrics(isolated_run):
    run_dir = isolated_run / "run"
    train(run_dir)
    policy = run_dir / "policy"
    model = AutoModelForCausalLM.from_pretrained(policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    ids = tokenizer("topic0 ctx0 ctx1", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == len(tokenizer)
    assert "leash train algo=sft debug=fast\n" in (policy / "README.md").read_text()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    resources = metrics["resources"]
    assert resources["steps"] == 5
    for key in ("peak_memory_bytes", "wall_time_s", "train_time_s", "tokens_per_s",
                "samples_per_s", "mean_step_time_s"):
        assert resources[key] > 0, key
    policy_bytes = resources["roles"]["policy"]
    assert policy_bytes["parameters"] == 4 * policy_bytes["num_parameters"]  # float32
    assert policy_bytes["optimizer_state"] >= 2 * policy_bytes["parameters"]  # Adam moments
    assert metrics["metrics"]["val/loss"] > 0


def test_second_identical_run_reuses_the_cached_policy(isolated_run):
    train(isolated_run / "first")
    second = train(isolated_run / "second")
    log = second.stdout + second.stderr
    assert "cached" in log and "not retraining" in log
    assert not (isolated_run / "second" / "checkpoints").exists()
    artifacts = json.loads((isolated_run / "second" / "artifacts.json").read_text())
    assert Path(artifacts["policy"]).parent.name == "sft"


def test_an_interrupted_run_resumes_from_its_last_checkpoint(isolated_run):
    run_dir = isolated_run / "run"
    train(run_dir, "algo.max_steps=4", "callbacks.checkpoint.every_n_train_steps=2")
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    # Same run folder, longer budget: training continues from step 4 instead of starting over.
    resumed = train(run_dir, "algo.max_steps=8", "callbacks.checkpoint.every_n_train_steps=2")
    assert "resuming from" in resumed.stdout + resumed.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resources"]["steps"] == 4
