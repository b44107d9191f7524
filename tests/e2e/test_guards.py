"""Every run guards its numbers end to end: a DPO run at an absurd learning rate is stopped or
flagged, never saved as if nothing happened; a run shorter than its validation interval is still
evaluated at its end."""

from __future__ import annotations

import json

import pytest

from killing import forked_train

pytestmark = pytest.mark.slow


def test_dpo_at_an_absurd_learning_rate_is_stopped_or_flagged(shared_cache, sft_policy, tmp_path):
    run = tmp_path / "run"
    overrides = ("algo=dpo", "algo.lr=1e3", "algo.max_steps=30", "eval.num_samples=16",
                 f"paths.cache_dir={shared_cache}", f"upstream.sft_policy={sft_policy}")
    code = forked_train(run, overrides)
    log = (tmp_path / "run.log").read_text()
    if code == 0:  # every quantity stayed finite: the loss trend must say the run diverged
        divergence = json.loads((run / "metrics.json").read_text())["divergence"]
        assert divergence["diverged"] and "DIVERGED: train/loss" in log
    else:
        assert code == 1
        assert "leash train: dpo step " in log and ": non-finite " in log
        assert "Traceback" not in log
        assert not (run / "policy").exists()


def test_a_run_shorter_than_its_validation_interval_is_evaluated_at_its_end(
    shared_cache, sft_policy, tmp_path
):
    run = tmp_path / "run"
    overrides = ("algo=dpo", "algo.max_steps=20", "trainer.val_check_interval=100",
                 "eval.num_samples=16", f"paths.cache_dir={shared_cache}",
                 f"upstream.sft_policy={sft_policy}")
    assert forked_train(run, overrides) == 0, (tmp_path / "run.log").read_text()[-3000:]
    written = json.loads((run / "metrics.json").read_text())
    evaluated = {"eval/exact_gold_reward", "eval/exact_kl", "eval/gold_reward"}
    assert evaluated <= set(written["metrics"])
    assert written["divergence"]["steps"] == 20 and not written["divergence"]["diverged"]
    assert (run / "frontier.json").exists() and (run / "eval_samples.jsonl").exists()
