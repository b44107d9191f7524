"""Small builders shared by several test files."""

from __future__ import annotations

from pathlib import Path

import lightning
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel


def tiny_model(vocab_size: int, seed: int = 0, init_range: float = 0.3) -> GPT2LMHeadModel:
    """A 1-layer GPT-2 whose larger-than-default init gives clearly non-uniform next tokens."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_embd=32,
        n_layer=1,
        n_head=2,
        n_positions=16,
        initializer_range=init_range,
    )
    return GPT2LMHeadModel(config).eval()


def quiet_trainer(**overrides) -> lightning.Trainer:
    """A one-process CPU Trainer that logs, checkpoints and prints nothing (unit tests)."""
    settings = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return lightning.Trainer(**{**settings, **overrides})


def save_judge(tokenizer, folder: Path, seed: int = 0) -> Path:
    """A small GPT-2 reward model with its own tokenizer, saved like a hub judge."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                        n_positions=256, num_labels=1, pad_token_id=tokenizer.pad_token_id
                        if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def direct_score(folder: Path, text: str, add_special_tokens: bool) -> float:
    """The reward model's own output on one unpadded sequence (Hugging Face's pooling)."""
    from leash.models.judge import Judge

    judge = Judge.load(str(folder))
    ids = judge.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    with torch.no_grad():
        return float(judge.model(input_ids=torch.tensor([ids])).logits[0, 0])


JUDGE_PROMPTS = [
    "\n\nHuman: How do I plant beans?\n\nAssistant:",
    "\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman: Write a poem about the sea.\n\nAssistant:",
    "Tell me about the moon.",
]
"""HH-style and plain prompts for judge tests."""
JUDGE_RESPONSES = [" Sow them in warm soil and water them.", " The sea is wide.",
                   " It reflects light."]
