"""Collators: encoded rows -> padded tensor batches (SFTBatch, PreferenceBatch, PromptBatch).

Training sequences are right padded (the loss reads them left to right); prompts for generation
are left padded (generation appends on the right). Labels copy the input ids with
``IGNORE_INDEX`` on prompt tokens and padding, so exactly the response tokens (EOS included,
unless truncation cut it) carry the loss. Collators are small picklable dataclasses, so
DataLoader worker processes can use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from leash.data.encoding import EncodedPair, EncodedPrompt, EncodedSFT
from leash.data.types import PreferenceBatch, PromptBatch, SFTBatch
from leash.sequences import IGNORE_INDEX, left_pad


class ReferenceLogps(NamedTuple):
    """Precomputed summed reference log-probs of one split, indexed by row index."""

    chosen: torch.Tensor
    """(N,)"""
    rejected: torch.Tensor
    """(N,)"""


class _Padded(NamedTuple):
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor


def _padded_rows(
    prompts: Sequence[list[int]], responses: Sequence[list[int]], length: int, pad_id: int
) -> list[list[list[int]]]:
    """Input ids, attention mask and labels of prompt + response rows, right padded to
    ``length``, as Python lists (one ``torch.tensor`` call then builds them all)."""
    ids, mask, labels = [], [], []
    for prompt, response in zip(prompts, responses, strict=True):
        used = len(prompt) + len(response)
        ids.append(prompt + response + [pad_id] * (length - used))
        mask.append([1] * used + [0] * (length - used))
        labels.append([IGNORE_INDEX] * len(prompt) + response + [IGNORE_INDEX] * (length - used))
    return [ids, mask, labels]


def pad_right(
    prompts: Sequence[list[int]], responses: Sequence[list[int]], length: int, pad_id: int
) -> _Padded:
    """Prompt + response sequences right padded to ``length``; labels only on responses.

    Returns (B, length) input ids, attention mask and labels.
    """
    rows = torch.tensor(_padded_rows(prompts, responses, length, pad_id), dtype=torch.long)
    return _Padded(*rows.view(3, len(prompts), length))  # (3, 0, length) for no rows too


@dataclass
class SFTCollator:
    """Rows -> SFTBatch, right padded to the longest prompt + response of the batch."""

    pad_id: int

    def __call__(self, rows: Sequence[EncodedSFT]) -> SFTBatch:
        """Collate one batch."""
        length = max(len(r.prompt_ids) + len(r.response_ids) for r in rows)
        padded = pad_right(
            [r.prompt_ids for r in rows], [r.response_ids for r in rows], length, self.pad_id
        )
        return SFTBatch(*padded)


@dataclass
class PairCollator:
    """Rows -> PreferenceBatch; chosen and rejected share one length T (the batch's longest).

    Optional fields come from the rows' carried columns (NaN where a row lacks a value, None
    when no row of the batch has one); ``reference`` (attached log-probs, picked by row index)
    takes precedence over carried reference columns.
    """

    pad_id: int
    reference: ReferenceLogps | None = None

    def __call__(self, rows: Sequence[EncodedPair]) -> PreferenceBatch:
        """Collate one batch."""
        length = max(len(r.prompt_ids) + max(len(r.chosen_ids), len(r.rejected_ids)) for r in rows)
        prompts = [r.prompt_ids for r in rows]
        chosen = _padded_rows(prompts, [r.chosen_ids for r in rows], length, self.pad_id)
        rejected = _padded_rows(prompts, [r.rejected_ids for r in rows], length, self.pad_id)
        sides = torch.tensor([chosen, rejected], dtype=torch.long).view(2, 3, len(rows), length)
        chosen, rejected = (_Padded(*side) for side in sides)
        index = torch.tensor([r.index for r in rows], dtype=torch.long)
        if self.reference is None:
            ref_chosen = _column([r.scores.reference_chosen_logps for r in rows])
            ref_rejected = _column([r.scores.reference_rejected_logps for r in rows])
        else:
            ref_chosen, ref_rejected = self.reference.chosen[index], self.reference.rejected[index]
        return PreferenceBatch(
            chosen_input_ids=chosen.input_ids,
            chosen_attention_mask=chosen.attention_mask,
            chosen_labels=chosen.labels,
            rejected_input_ids=rejected.input_ids,
            rejected_attention_mask=rejected.attention_mask,
            rejected_labels=rejected.labels,
            index=index,
            chosen_gold_reward=_column([r.scores.chosen_gold_reward for r in rows]),
            rejected_gold_reward=_column([r.scores.rejected_gold_reward for r in rows]),
            reference_chosen_logps=ref_chosen,
            reference_rejected_logps=ref_rejected,
        )


@dataclass
class PromptCollator:
    """Prompts -> PromptBatch, left padded to the longest prompt of the batch."""

    pad_id: int

    def __call__(self, prompts: Sequence[EncodedPrompt]) -> PromptBatch:
        """Collate one batch."""
        input_ids, attention_mask = left_pad([p.prompt_ids for p in prompts], self.pad_id)
        index = torch.tensor([p.index for p in prompts], dtype=torch.long)
        return PromptBatch(input_ids, attention_mask, index)


def _column(values: Sequence[float | None]) -> torch.Tensor | None:
    """(B,) float tensor of optional values: None if all are absent, NaN for a missing one."""
    if all(value is None for value in values):
        return None
    return torch.tensor([float("nan") if v is None else v for v in values], dtype=torch.float32)
