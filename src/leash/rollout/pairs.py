"""On-policy preference pairs: two sampled responses per prompt, ordered by their reward.

- :func:`label_pairs` is the rule, a pure function: the two scores of each prompt's responses
  in, the chosen and the rejected row out; a tie (equal scores, identical responses included)
  gives no pair and is counted.
- :func:`pair_batch` lays the labelled responses out the way the DPO family reads stored pairs
  (a :class:`~leash.data.types.PreferenceBatch`: prompt + response right padded, labels on the
  response tokens only), so that the DPO module computes exactly the same loss on sampled pairs
  as on a stored pair set.
- :func:`select_prompts` picks the pairs of some prompts out of a larger set (an iterative
  round's preference set, by the prompt indices of a training batch);
  :func:`concatenate_pairs` joins the sets sampled chunk by chunk.

The responses come from the rollout sampler (:func:`leash.rollout.rollout.sample`, two per
prompt) and their scores from a :class:`~leash.rollout.rewards.RewardFn`
(:func:`leash.rollout.rollout.score`); :mod:`leash.modules.online_dpo` times each step.

Shapes: ``N`` prompts, ``2N`` sampled rows (prompt i's responses are rows 2i and 2i + 1), ``M``
untied pairs, ``T`` tokens of a right-padded prompt + response sequence.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F

from leash.data.collate import pad_right
from leash.data.types import PreferenceBatch
from leash.rollout.rollout import Responses
from leash.sequences import IGNORE_INDEX

SAMPLES_PER_PAIR = 2
"""Responses sampled per prompt: one pair each."""


class PairLabels(NamedTuple):
    """Which sampled row of each untied pair is chosen."""

    chosen: torch.Tensor
    """(M,) row of the chosen (higher-scored) response among the 2N sampled rows."""
    rejected: torch.Tensor
    """(M,) row of the rejected response."""
    prompt: torch.Tensor
    """(M,) position of the pair's prompt among the N prompts (``chosen // 2``)."""
    ties: int
    """Prompts whose two responses scored the same: no pair."""


def label_pairs(scores: torch.Tensor) -> PairLabels:
    """Order each prompt's two responses by score; skip ties.

    Args:
        scores: (2N,) score of every sampled row; rows 2i and 2i + 1 answer prompt i.
    Returns:
        the chosen and rejected rows of the M <= N untied prompts, in prompt order.
    Raises:
        ValueError: ``scores`` is not one-dimensional of even length, or holds NaN (a NaN
            compares unequal to everything and would make a pair out of nothing).
    """
    if scores.ndim != 1 or scores.numel() % SAMPLES_PER_PAIR:
        raise ValueError(f"scores: expected (2N,) scores, got shape {tuple(scores.shape)}")
    if scores.isnan().any():
        raise ValueError("scores: a NaN score cannot order a pair")
    first, second = scores.view(-1, SAMPLES_PER_PAIR).unbind(1)
    untied = first != second
    prompt = untied.nonzero().squeeze(1)
    second_wins = (second > first)[prompt].long()
    chosen = SAMPLES_PER_PAIR * prompt + second_wins
    rejected = SAMPLES_PER_PAIR * prompt + 1 - second_wins
    return PairLabels(chosen, rejected, prompt, int((~untied).sum()))


def _tokens(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """The real tokens of every row (mask 1), padding dropped."""
    return [row[keep].tolist() for row, keep in zip(ids.cpu(), mask.cpu().bool(), strict=True)]


def pair_batch(
    responses: Responses, labels: PairLabels, prompt_index: torch.Tensor, pad_token_id: int
) -> PreferenceBatch:
    """The labelled pairs as a PreferenceBatch (on the responses' device).

    Args:
        responses: the 2N sampled rows (left-padded prompts, right-padded responses).
        labels: the pairs of :func:`label_pairs`.
        prompt_index: (N,) index of each prompt in its split (becomes ``batch.index``).
        pad_token_id: fills the right padding.
    Returns:
        M pairs, chosen and rejected right padded to one T; no gold or reference columns.
    """
    prompts = _tokens(responses.prompt_ids, responses.prompt_mask)
    answers = _tokens(responses.response_ids, responses.response_mask)
    pair_prompts = [prompts[row] for row in labels.chosen.tolist()]
    chosen = [answers[row] for row in labels.chosen.tolist()]
    rejected = [answers[row] for row in labels.rejected.tolist()]
    length = max(
        (len(p) + max(len(c), len(r)) for p, c, r in zip(pair_prompts, chosen, rejected,
                                                         strict=True)),
        default=0,
    )
    chosen_rows = pad_right(pair_prompts, chosen, length, pad_token_id)
    rejected_rows = pad_right(pair_prompts, rejected, length, pad_token_id)
    batch = PreferenceBatch(
        *chosen_rows, *rejected_rows, index=prompt_index.cpu()[labels.prompt.cpu()].long()
    )
    return batch.to(responses.prompt_ids.device)


def concatenate_pairs(parts: list[PreferenceBatch], pad_token_id: int) -> PreferenceBatch:
    """The pairs of several batches in one, right padded to the widest (inverse of
    :func:`select_prompts` over disjoint prompts); fields absent (None) in every part stay None.

    Args:
        parts: PreferenceBatches with the same fields present.
        pad_token_id: fills the new input-id columns (masks get 0, labels IGNORE_INDEX).
    """
    width = max(part.chosen_input_ids.shape[1] for part in parts)
    fills = {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX}

    def joined(name: str) -> torch.Tensor | None:
        values = [getattr(part, name) for part in parts]
        if all(value is None for value in values):
            return None
        if values[0].ndim == 1:
            return torch.cat(values)
        fill = next(f for suffix, f in fills.items() if name.endswith(suffix))
        return torch.cat([F.pad(v, (0, width - v.shape[1]), value=fill) for v in values])

    return type(parts[0])(**{spec.name: joined(spec.name) for spec in dataclasses.fields(parts[0])})


def select_prompts(batch: PreferenceBatch, prompt_index: torch.Tensor) -> PreferenceBatch:
    """The pairs of ``batch`` whose prompt is one of ``prompt_index``, in ``batch``'s order,
    without the padding columns no selected row uses.

    Args:
        batch: pairs whose ``index`` is their prompt's index in the split.
        prompt_index: (K,) prompt indices to keep.
    """
    keep = torch.isin(batch.index, prompt_index.to(batch.index.device))
    masks = torch.cat([batch.chosen_attention_mask[keep], batch.rejected_attention_mask[keep]])
    width = int(masks.sum(1).max()) if len(masks) else 0
    return type(batch)(**{
        spec.name: _rows(getattr(batch, spec.name), keep, width)
        for spec in dataclasses.fields(batch)
    })


def _rows(value: torch.Tensor | None, keep: torch.Tensor, width: int) -> torch.Tensor | None:
    """The kept rows of a (B,) or (B, T) field, cut to ``width`` columns; None stays None."""
    if value is None:
        return None
    return value[keep][:, :width] if value.ndim == 2 else value[keep]
