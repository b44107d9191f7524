"""`leash train` for the DPO family and the reward model, end to end on the exact task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

pytestmark = pytest.mark.slow

EVAL_KEYS = ("eval/gold_reward", "eval/kl", "eval/kl_k3", "eval/exact_kl",
             "eval/exact_gold_reward", "eval/frontier_gap")
DPO_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
            "rewards/margins", "logps/chosen", "logps/rejected")


def train(run_dir: Path, *overrides: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", "debug=fast", f"hydra.run.dir={run_dir}",
         *overrides],
        capture_output=True, text=True, timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_dpo_then_reward_share_the_sft_policy_and_the_pairs(isolated_run):
    dpo_log = train(isolated_run / "dpo", "algo=dpo")
    assert "stage sft: not cached" in dpo_log
    metrics = metrics_of(isolated_run / "dpo")
    for key in DPO_KEYS:
        assert f"train/{key}" in metrics["metrics"] and f"val/{key}" in metrics["metrics"], key
    for key in (*EVAL_KEYS, "eval/implicit_rm_accuracy", "eval/implicit_rm_gold_accuracy"):
        assert key in metrics["metrics"], key
    roles = metrics["resources"]["roles"]
    assert set(roles) == {"policy", "reference"}
    assert roles["reference"]["trainable_parameters"] == 0
    assert roles["reference"]["parameters"] == roles["policy"]["parameters"]
    AutoModelForCausalLM.from_pretrained(isolated_run / "dpo" / "policy")
    card = (isolated_run / "dpo" / "policy" / "README.md").read_text()
    assert "leash train debug=fast algo=dpo\n" in card

    reward_log = train(isolated_run / "reward", "algo=reward")
    assert "stage sft: not cached" not in reward_log  # trained once, by the DPO job
    assert "cache: reusing sft" in reward_log and "cache: reusing pairs" in reward_log
    reward = metrics_of(isolated_run / "reward")["metrics"]
    for key in ("loss", "accuracy", "margin", "reward/mean", "reward/std", "gold_accuracy"):
        assert f"val/{key}" in reward, key
    assert "val/gold_corr" in reward
    AutoModelForSequenceClassification.from_pretrained(isolated_run / "reward" / "reward_model")
    assert "| `val/accuracy` |" in (isolated_run / "reward/reward_model/README.md").read_text()

    # Precomputed reference: log-probs computed once and cached; no reference model held.
    precomputed_log = train(isolated_run / "pre", "algo=dpo", "algo.reference=precomputed")
    assert "cache: built reference_logps" in precomputed_log
    roles = metrics_of(isolated_run / "pre")["resources"]["roles"]
    assert set(roles) == {"policy"}
