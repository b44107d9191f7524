"""Log-probabilities of given tokens under a causal LM's logits: the quantity every loss uses."""

from __future__ import annotations

import torch

from leash.sequences import IGNORE_INDEX


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-probability of each target token: ``log softmax(logits)[..., target]``.

    One fused ``log_softmax`` kernel and a gather (its backward is one kernel too), in float32.
    It keeps one (B, T, V) tensor for the backward, as ``logit[target] - logsumexp(logits)``
    does, and is several times faster than that on CPU.

    Args:
        logits: (B, T, V) scores at each position.
        targets: (B, T) token ids to score at the same positions (any value where unused,
            e.g. IGNORE_INDEX: it is clamped before the gather and must be masked by the caller).
    Returns:
        (B, T) float32 log-probabilities.
    """
    logps = logits.float().log_softmax(-1)
    return torch.gather(logps, -1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)


def shift_for_next_token(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align position t's logits with token t+1: drop the last logit and the first label.

    Args:
        logits: (B, T, V) causal-LM output for a sequence.
        labels: (B, T) that sequence's ids with IGNORE_INDEX on tokens that carry no loss.
    Returns:
        logits (B, T-1, V) and labels (B, T-1).
    """
    return logits[:, :-1, :], labels[:, 1:]


def response_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of the labelled (response) tokens of each sequence.

    Args:
        logits: (B, T, V) causal-LM output over prompt + response.
        labels: (B, T) input ids with IGNORE_INDEX on prompt and padding.
    Returns:
        summed log-probs (B,) and the number of scored tokens (B,), both float32.
    """
    logits, labels = shift_for_next_token(logits, labels)
    mask = labels != IGNORE_INDEX
    per_token = token_logps(logits, labels) * mask
    return per_token.sum(-1), mask.sum(-1).float()
