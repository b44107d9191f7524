"""Typed containers that travel between the data module, the algorithms and the evaluator.

Shapes: ``B`` rows, ``T`` tokens (right padded), ``P`` prompt tokens (left padded, for generation).
Labels follow the Hugging Face convention: ``leash.sequences.IGNORE_INDEX`` marks tokens that carry
no loss (prompt, pad).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch


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

    def concatenated(self) -> PairInputs:
        """Chosen rows over rejected rows, so that one (2B, T) forward scores both."""
        return PairInputs(
            torch.cat([self.chosen_input_ids, self.rejected_input_ids]),
            torch.cat([self.chosen_attention_mask, self.rejected_attention_mask]),
            torch.cat([self.chosen_labels, self.rejected_labels]),
        )


class PairInputs(NamedTuple):
    """Chosen rows then rejected rows of a preference batch, for one (2B, T) forward."""

    input_ids: torch.Tensor
    """(2B, T)"""
    attention_mask: torch.Tensor
    """(2B, T)"""
    labels: torch.Tensor
    """(2B, T) response tokens, IGNORE_INDEX on prompt and padding."""


@dataclass
class PromptBatch(_TensorBatch):
    """Prompts for on-policy generation, left padded so that generation appends on the right."""

    input_ids: torch.Tensor
    """(B, P) left padded."""
    attention_mask: torch.Tensor
    """(B, P)"""
    index: torch.Tensor
    """(B,) prompt index in the deduplicated prompt list of its split."""


@dataclass(frozen=True)
class Samples:
    """Sampled responses, one entry per sample, grouped by prompt (prompt 0's samples first)."""

    prompt_index: list[int]
    """Index of the sample's prompt in the list that was sampled from."""
    response_ids: list[list[int]]
    """Generated token ids without padding; the final EOS is included when the sample has one."""
    ended: list[bool]
    """Whether the sample ended with EOS (False: cut at ``max_new_tokens``)."""
    text: list[str]
    """Decoded response without special tokens (EOS not written)."""

    def __len__(self) -> int:
        return len(self.prompt_index)


SampleFn = Callable[[list[str], int], Samples]
"""``sample_fn(prompts, num_samples)``: a sampler with its model and settings bound."""
