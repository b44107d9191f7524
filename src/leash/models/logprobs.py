"""Log-probabilities of responses under a causal LM: policy, reference and old policy alike.

Two batch layouts, one per consumer:

- **prompt + response** (PPO rollouts, the evaluator): left-padded prompts followed by
  right-padded responses, per-token log-probs of the response (:func:`response_token_logps`,
  :func:`tempered_logps`);
- **labelled pairs** (the DPO family): chosen over rejected sequences with labels on the
  response tokens, summed log-probs per sequence (:func:`pair_logps`), each prompt run once
  for both of its responses where the model allows it (:mod:`leash.models.shared_prompt`).

Positions count real tokens only, as in the sampler, so a response scores the same alone or in
a padded batch. ``allowed_token_ids`` restricts the policy exactly as the sampler did.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from leash.losses.logprobs import response_logps, token_logps
from leash.models.shared_prompt import (
    backbone_of,
    lm_head_of,
    response_predictors,
    shared_prompt_hidden,
    shared_split,
)
from leash.sequences import IGNORE_INDEX, positions_from_mask, restrict_logits


class PolicyOutput(NamedTuple):
    """Per-token log-probs of responses under the policy, and the logits they came from."""

    logps: torch.Tensor
    """(B, T) log-probs of the response tokens, 0 on padding."""
    logits: torch.Tensor
    """(B, T, V) temperature-scaled, restricted logits at the response positions."""


class PairLogps(NamedTuple):
    """One summed quantity per chosen and per rejected response of each pair."""

    chosen: torch.Tensor
    """(B,) float32"""
    rejected: torch.Tensor
    """(B,) float32"""


def response_token_logps(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    allowed_token_ids: torch.Tensor | None = None,
    return_logits: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(y_t | x, y_<t) of each response token, 0 on padding.

    Args:
        model: a causal LM (gradients flow when called outside ``torch.no_grad``).
        prompt_ids: (B, P) left-padded prompts.
        prompt_mask: (B, P) 1 on real prompt tokens.
        response_ids: (B, T) responses, padded after EOS.
        response_mask: (B, T) 1 on real response tokens (EOS included).
        allowed_token_ids: (A,) restrict the policy to these tokens, as the sampler did.
        return_logits: also return the (B, T, V) restricted logits at the response positions.
    Returns:
        (B, T) log-probs, and the logits when asked.
    """
    input_ids = torch.cat([prompt_ids, response_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions_from_mask(attention_mask),
    ).logits
    # The token at prompt position P + t is predicted by the logits at P + t - 1.
    width = prompt_ids.shape[1]
    logits = restrict_logits(logits[:, width - 1 : -1, :], allowed_token_ids)
    logps = token_logps(logits, response_ids) * response_mask
    return (logps, logits) if return_logits else logps


def tempered_logps(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    allowed_token_ids: torch.Tensor | None,
    temperature: float,
) -> PolicyOutput:
    """Response log-probs under ``softmax(logits / temperature)``: the distribution sampled.

    At temperature 1 these are exactly :func:`response_token_logps`; otherwise the restricted
    logits are divided first (as TRL does), so the PPO ratio and the KL use the sampling policy.

    Returns:
        PolicyOutput(logps (B, T), logits (B, T, V)).
    """
    logps, logits = response_token_logps(
        model, prompt_ids, prompt_mask, response_ids, response_mask, allowed_token_ids, True
    )
    if temperature != 1.0:  # re-mask: below 1, dividing the mask value overflows to -inf
        logits = restrict_logits(logits / temperature, allowed_token_ids)
        logps = token_logps(logits, response_ids) * response_mask
    return PolicyOutput(logps, logits)


def pair_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    allowed_token_ids: torch.Tensor | None = None,
) -> tuple[PairLogps, PairLogps]:
    """Summed response log-probs and response token counts of every pair.

    Where the model and the rows allow it (:mod:`leash.models.shared_prompt`), each prompt runs
    once for its two responses and the LM head runs only at the positions that predict a
    response token; otherwise one forward of the whole rows. Both give the same values to float
    rounding (tests/models/test_shared_prompt.py).

    Args:
        model: a causal LM (plain or PEFT-wrapped) returning ``.logits`` (2B, T, V).
        input_ids: (2B, T) chosen rows then rejected rows, right padded.
        attention_mask: (2B, T) 1 on real tokens.
        labels: (2B, T) response tokens, IGNORE_INDEX on prompt and padding.
        allowed_token_ids: (A,) restrict the policy to these tokens (a built-in task's support,
            as its sampler and oracle do); None scores over the whole vocabulary.
    Returns:
        log-probs ``(chosen (B,), rejected (B,))`` and token counts in the same layout.
    """
    summed = shared_prompt_logps(model, input_ids, attention_mask, labels, allowed_token_ids)
    if summed is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        summed = response_logps(restrict_logits(logits, allowed_token_ids), labels)[0]
    counts = (labels[:, 1:] != IGNORE_INDEX).sum(-1).float()
    return PairLogps(*summed.chunk(2)), PairLogps(*counts.chunk(2))


def shared_prompt_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    allowed_token_ids: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """(2B,) summed response log-probs with each prompt run once and the LM head applied only
    where it predicts a response token; None where :func:`~leash.models.shared_prompt.shared_split`
    says the whole rows should run."""
    split = shared_split(model, input_ids, attention_mask, labels)
    hidden = None if split is None else shared_prompt_hidden(backbone_of(model), split)
    if hidden is None:
        return None
    logits = restrict_logits(lm_head_of(model)(response_predictors(*hidden)), allowed_token_ids)
    mask = split.response_labels != IGNORE_INDEX
    return (token_logps(logits, split.response_labels) * mask).sum(-1)
