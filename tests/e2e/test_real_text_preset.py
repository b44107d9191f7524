"""`experiment=real_text_offline` end to end, briefly: SFT on the local HH-style file with the
BPE tokenizer trained on it, then DPO on the same pairs relabelled by a saved judge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from transformers import AutoTokenizer

from leash.models.tokenizers import END_OF_TEXT

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BRIEF = ["experiment=real_text_offline", "algo.max_steps=3", "eval.max_prompts=4",
         "eval.max_new_tokens=16"]


def train(run_dir: Path, *overrides: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", *BRIEF, f"hydra.run.dir={run_dir}", *overrides],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_offline_real_text_preset_trains_and_relabels(isolated_run):
    sft = isolated_run / "sft"
    train(sft, "algo=sft")
    metrics = json.loads((sft / "metrics.json").read_text())
    assert metrics["resources"]["steps"] == 3
    assert "eval/response_length" in metrics["metrics"]
    base = Path(json.loads((sft / "artifacts.json").read_text())["base_model"])
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert tokenizer.eos_token == END_OF_TEXT and tokenizer.pad_token is None
    assert AutoTokenizer.from_pretrained(sft / "policy").pad_token == END_OF_TEXT  # as for GPT-2

    # The base model folder doubles as a (random) judge: a GPT-2 saved with its own tokenizer.
    judge = base
    dpo = isolated_run / "dpo"
    train(dpo, "algo=dpo", f"upstream.sft_policy={sft / 'policy'}",
          f"data.relabel_with={judge}", "data.relabel_temperature=0")
    pairs = Path(json.loads((dpo / "artifacts.json").read_text())["data"])
    assert pairs.parent.name == "pairs"
    relabelled = datasets.load_from_disk(str(pairs))["train"]
    assert len(relabelled) == 397
    scores = zip(relabelled["chosen_judge_score"], relabelled["rejected_judge_score"], strict=True)
    assert all(c >= r for c, r in scores)
    assert "eval/implicit_rm_accuracy" in json.loads((dpo / "metrics.json").read_text())["metrics"]
