"""`leash compare` on a user's own data: a GPT-2-convention model, an HH-style file whose size
does not divide the batch, and an independent judge with its own (ChatML) tokenizer."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from helpers import save_judge
from tokenizer_zoo import chatml_like, gpt2_like

TOPICS = ["the garden", "the sea", "tea", "the moon", "a poem", "the weather", "bread", "cats"]


def hh_rows(count: int) -> list[dict[str, str]]:
    """HH-RLHF-style rows: a two-turn dialogue, a helpful chosen and a curt rejected answer."""
    rows = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        prompt = (f"\n\nHuman: Hello, I have a question number {i}.\n\nAssistant: Sure, ask away."
                  f"\n\nHuman: Can you tell me about {topic}?\n\nAssistant:")
        rows.append({
            "chosen": prompt + f" Of course. Here is a short, kind answer about {topic}.",
            "rejected": prompt + " No.",
        })
    return rows


def save_gpt2_like_model(folder: Path) -> Path:
    """A small GPT-2 whose tokenizer has GPT-2's conventions (no pad, no BOS, one special)."""
    tokenizer = gpt2_like()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                        n_positions=256, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_compare_on_own_data_reports_what_each_method_buys(isolated_run):
    model = save_gpt2_like_model(isolated_run / "model")
    judge = save_judge(chatml_like(), isolated_run / "judge")
    data = isolated_run / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in hh_rows(61)))
    out = isolated_run / "compare"
    overrides = [
        f"model.name_or_path={model}", "data=files", f"data.path={data}", "debug=fast",
        "data.max_length=96", "data.max_prompt_length=64", "eval.max_prompts=6",
        "eval.num_samples=2", "eval.max_new_tokens=8", "ppo.algo.max_new_tokens=8",
        f"eval.judge={judge}",
    ]
    result = subprocess.run([sys.executable, "-m", "leash", "compare", "--out", str(out),
                             *overrides], capture_output=True, text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "skipping ppo_gt" in log  # no gold reward on real data
    ppo_log = (out / "ppo" / "console.log").read_text()  # each stage's own log, in its folder
    assert "are left out of the rollouts" in ppo_log  # the partial last batch, dropped and said
    assert len(result.stdout.splitlines()) < 40  # the calm console: a board, the table, files
    with (out / "results.csv").open() as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"sft-files", "reward-files", "ppo-files", "dpo-files"}
    for method in ("sft-files", "ppo-files", "dpo-files"):
        row = rows[method]
        for column in ("RM score", "judge score", "win rate", "length (tokens)"):
            assert row[column] != "", (method, column)
        assert 0.0 <= float(row["win rate"]) <= 1.0
    assert float(rows["sft-files"]["win rate"]) == 0.5  # the reference against itself
    report = (out / "report.md").read_text()
    assert "RM score" in report and "judge score" in report and "gold reward" not in report
    assert (out / "frontier.png").exists()
