"""Sequence primitives every layer may use: padding, positions, logit restriction, eval mode.

The leaf of the package: it imports nothing of leash. Conventions used everywhere:

- prompts for generation are **left** padded (generation appends on the right), responses and
  whole training sequences **right** padded;
- position ids count real tokens only (``cumsum(mask) - 1``), so a sequence scores the same
  alone or in a padded batch;
- labels follow the Hugging Face convention: :data:`IGNORE_INDEX` marks tokens with no loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

IGNORE_INDEX = -100
"""Label of a token that carries no loss (prompt, padding)."""


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put a model in eval mode (no dropout) for the block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into a left-padded batch so that generation appends on the right.

    Returns:
        input_ids (B, P) and attention_mask (B, P), P the longest sequence.
    """
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, width - len(sequence) :] = torch.tensor(list(sequence))
            attention_mask[row, width - len(sequence) :] = 1
    return input_ids, attention_mask


def right_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into a right-padded batch (responses, whole sequences to score).

    Returns:
        input_ids (B, T) and attention_mask (B, T), T the longest sequence and at least 1, so
        that a batch of empty responses still makes a tensor.
    """
    width = max(1, max(len(sequence) for sequence in sequences))
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    return input_ids, attention_mask


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only: (B, T) mask -> (B, T) ``cumsum - 1`` (pads 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the rightmost real token of each row (left or right padding).

    Args:
        attention_mask: (B, T) 1 on real tokens.
    Returns:
        (B,) long indices (0 for an all-padding row).
    """
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


def restrict_logits(logits: torch.Tensor, allowed_token_ids: torch.Tensor | None) -> torch.Tensor:
    """Mask every logit outside ``allowed_token_ids`` so the policy only produces those tokens.

    The masked value is the dtype's most negative finite number, not -inf: softmax still gives
    exactly 0, and a masked log-prob multiplied by a 0 mask stays 0 instead of becoming NaN.

    Args:
        logits: (..., V) scores.
        allowed_token_ids: (A,) ids to keep; None keeps the whole vocabulary.
    Returns:
        (..., V) logits.
    """
    if allowed_token_ids is None:
        return logits
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    allowed[allowed_token_ids.to(logits.device)] = True
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
