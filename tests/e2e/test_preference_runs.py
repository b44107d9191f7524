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

    reward_log = train(isolated_run / "reward", "algo=reward")
    assert "stage sft: not cached" not in reward_log  # trained once, by the DPO job
    assert "cache: reusing sft" in reward_log and "cache: reusing pairs" in reward_log
    reward = metrics_of(isolated_run / "reward")["metrics"]
    for key in ("loss", "accuracy", "margin", "reward/mean", "reward/std", "gold_accuracy"):
        assert f"val/{key}" in reward, key
    assert "val/gold_corr" in reward
    AutoModelForSequenceClassification.from_pretrained(isolated_run / "reward" / "reward_model")

    # Precomputed reference: log-probs computed once and cached; no reference model held.
    precomputed_log = train(isolated_run / "pre", "algo=dpo", "algo.reference=precomputed")
    assert "cache: built reference_logps" in precomputed_log
    roles = metrics_of(isolated_run / "pre")["resources"]["roles"]
    assert set(roles) == {"policy"}


@pytest.mark.parametrize(
    ("algo", "folder", "model_class"),
    [("dpo", "policy", AutoModelForCausalLM),
     ("reward", "reward_model", AutoModelForSequenceClassification)],
)
def test_two_ddp_processes_train_like_one_process_with_the_same_global_batch(
    isolated_run, algo, folder, model_class
):
    sft = isolated_run / "sft"
    train(sft, "algo=sft")  # one SFT policy for both runs (a DDP job would train its own)
    common = (f"algo={algo}", f"upstream.sft_policy={sft / 'policy'}", "data.shuffle=false",
              "eval.enabled=false", "trainer.limit_val_batches=1.0")
    train(isolated_run / "one", *common, "data.batch_size=16")
    train(isolated_run / "ddp", *common, "data.batch_size=8", "trainer=ddp_cpu")
    one = model_class.from_pretrained(isolated_run / "one" / folder).state_dict()
    ddp = model_class.from_pretrained(isolated_run / "ddp" / folder).state_dict()
    start = model_class.from_pretrained(sft / "policy").state_dict()
    shared = [name for name in one if name in start]
    travelled = max(float((one[n] - start[n]).abs().max()) for n in shared)
    apart = max(float((ddp[n] - one[n]).abs().max()) for n in one)
    assert travelled > 1e-4, "training changed nothing: the comparison would be vacuous"
    # Float32 sums in another order can flip the sign of a near-zero gradient, and Adam turns
    # that into a full-size step; everything else must agree.
    assert apart < 0.05 * travelled, (apart, travelled)
    one_metrics = metrics_of(isolated_run / "one")["metrics"]
    ddp_metrics = metrics_of(isolated_run / "ddp")["metrics"]
    assert ddp_metrics["val/loss"] == pytest.approx(one_metrics["val/loss"], abs=1e-3)
