"""`leash train algo=ppo|ppo_gt` end to end: metrics, roles, memory modes, NaN stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PPO_KEYS = ("objective/kl", "objective/kl_k3", "objective/entropy", "objective/scores",
            "objective/rlhf_reward", "policy/approxkl_avg", "policy/clipfrac_avg",
            "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg", "val/ratio",
            "val/num_eos_tokens", "kl_coef")
# A wider tiny model, so that holding one network instead of three is visible in the peak RSS.
WIDER = ("model.tiny.hidden_size=384", "model.tiny.num_layers=6", "model.tiny.num_heads=6")


def train(run_dir: Path, *overrides: str, expect_ok: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", "debug=fast", f"hydra.run.dir={run_dir}",
         *overrides],
        capture_output=True, text=True, timeout=600,
    )
    log = result.stdout + result.stderr
    assert (result.returncode == 0) == expect_ok, log[-4000:]
    return log


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_ppo_with_the_learned_reward_model_reports_the_ppo_vocabulary(isolated_run):
    log = train(isolated_run / "ppo", "algo=ppo", "algo.max_steps=3")
    assert "stage reward: not cached" in log
    metrics = metrics_of(isolated_run / "ppo")
    for key in PPO_KEYS:
        assert f"train/{key}" in metrics["metrics"], key
    for key in ("eval/gold_reward", "eval/rm_score", "eval/exact_kl", "eval/frontier_gap"):
        assert key in metrics["metrics"], key
    assert set(metrics["resources"]["roles"]) == {"policy", "reference", "reward", "critic"}
    for role in metrics["resources"]["roles"].values():
        assert role["parameters"] > 0
    assert "| `algo.kl_coef` |" in (isolated_run / "ppo/policy/README.md").read_text()


def test_shared_lora_holds_less_memory_than_separate_models(isolated_run):
    sft = isolated_run / "sft"
    train(sft, "algo=sft", "algo.max_steps=2", "eval.enabled=false", *WIDER)
    # Two iterations of 16 rollouts: the peak is reached in the first update already.
    common = ("algo=ppo_gt", f"upstream.sft_policy={sft / 'policy'}", "algo.max_steps=2",
              "data.batch_size=16", "eval.enabled=false", *WIDER)
    train(isolated_run / "separate", *common)
    train(isolated_run / "shared", *common, "algo.memory_mode=shared_lora",
          "algo.critic_init=policy", "peft=lora")
    separate, shared = metrics_of(isolated_run / "separate"), metrics_of(isolated_run / "shared")
    resident = {
        name: sum(r["parameters"] for r in run["resources"]["roles"].values())
        for name, run in (("separate", separate), ("shared", shared))
    }
    assert resident["shared"] < 0.5 * resident["separate"]
    # Three networks' weights, gradients and Adam moments against one frozen base + adapters:
    # hundreds of MiB at this width, far above the run-to-run noise of the peak RSS.
    gap = separate["resources"]["peak_memory_bytes"] - shared["resources"]["peak_memory_bytes"]
    assert gap > 100 * 2**20, gap


def test_a_non_finite_reward_stops_the_run_naming_step_and_quantity(isolated_run):
    # A learned reward model whose score head is NaN: scores of every rollout are NaN.
    sft = isolated_run / "sft"
    train(sft, "algo=sft")
    from transformers import AutoModelForSequenceClassification

    reward = AutoModelForSequenceClassification.from_pretrained(sft / "policy", num_labels=1)
    reward.score.weight.data.fill_(float("nan"))
    reward.config.pad_token_id = 0
    reward.save_pretrained(isolated_run / "nan_reward")
    log = train(isolated_run / "ppo", "algo=ppo", "algo.critic_init=policy",
                f"upstream.sft_policy={sft / 'policy'}",
                f"upstream.reward_model={isolated_run / 'nan_reward'}", expect_ok=False)
    # One line, not a traceback: `leash train: PPO iteration 0 (...): non-finite scores; ...`
    assert "leash train: PPO iteration 0" in log and "non-finite scores" in log
    assert "Traceback" not in log
