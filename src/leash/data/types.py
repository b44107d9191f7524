"""Typed containers that travel between the data module, the algorithms and the evaluator.

Shapes: ``B`` rows, ``T`` tokens (right padded), ``P`` prompt tokens (left padded, for generation).
Labels follow the Hugging Face convention: ``-100`` marks tokens that carry no loss (prompt, pad).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

IGNORE_INDEX = -100


class _TensorBatch:
    """Moves every tensor field to a device (what Lightning calls on unknown batch types)."""

    def to(self, device: torch.device | str) -> _TensorBatch:
        moved = {
            spec.name: (value.to(device) if isinstance(value, torch.Tensor) else value)
            for spec in fields(self)  # type: ignore[arg-type]
            for value in [getattr(self, spec.name)]
        }
        return type(self)(**moved)

    def __len__(self) -> int:
        first = getattr(self, fields(self)[0].name)  # type: ignore[arg-type]
        return int(first.shape[0])


@dataclass
class SFTBatch(_TensorBatch):
    """Prompt + response sequences; only response tokens (EOS included) carry the loss."""

    input_ids: torch.Tensor
    """(B, T) token ids, right padded."""
    attention_mask: torch.Tensor
    """(B, T) 1 for real tokens."""
    labels: torch.Tensor
    """(B, T) copy of input_ids with prompt and padding set to IGNORE_INDEX."""


@dataclass
class PreferenceBatch(_TensorBatch):
    """Chosen and rejected sequences of the same prompts, padded to one common length T.

    Chosen and rejected share T so that an algorithm can concatenate them into one (2B, T)
    forward pass. Optional fields are None when the source has no such column.
    """

    chosen_input_ids: torch.Tensor
    """(B, T)"""
    chosen_attention_mask: torch.Tensor
    """(B, T)"""
    chosen_labels: torch.Tensor
    """(B, T) response tokens of the chosen sequence, IGNORE_INDEX elsewhere."""
    rejected_input_ids: torch.Tensor
    """(B, T)"""
    rejected_attention_mask: torch.Tensor
    """(B, T)"""
    rejected_labels: torch.Tensor
    """(B, T)"""
    prompt_lengths: torch.Tensor
    """(B,) prompt tokens at the start of each sequence."""
    index: torch.Tensor
    """(B,) row index in its split, stable for a seed (keys precomputed reference log-probs)."""
    chosen_gold_reward: torch.Tensor | None = None
    """(B,) gold reward of the chosen response (built-in tasks only)."""
    rejected_gold_reward: torch.Tensor | None = None
    """(B,)"""
    reference_chosen_logps: torch.Tensor | None = None
    """(B,) summed reference log-probs of the chosen response, when precomputed."""
    reference_rejected_logps: torch.Tensor | None = None
    """(B,)"""


@dataclass
class PromptBatch(_TensorBatch):
    """Prompts for on-policy generation, left padded so that generation appends on the right."""

    input_ids: torch.Tensor
    """(B, P) left padded."""
    attention_mask: torch.Tensor
    """(B, P)"""
    index: torch.Tensor
    """(B,) prompt index in the deduplicated prompt list of its split."""
