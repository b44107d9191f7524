"""Small builders shared by several test files."""

from __future__ import annotations

import lightning
import torch
from transformers import GPT2Config, GPT2LMHeadModel


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
