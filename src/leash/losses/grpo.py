"""GRPO's loss (Shao et al. 2024): PPO's clipped surrogate plus a per-token KL term.

GRPO keeps the KL to the reference out of the reward and puts it in the loss instead, as
``kl_coef · k3(π ‖ π_ref)`` at every token, with the CURRENT policy's log-probs (so the term
has gradients), exactly as TRL 1.16's ``GRPOTrainer._compute_loss`` does.
"""

from __future__ import annotations

import torch

from leash.losses.kl import kl_k3
from leash.losses.ppo import PolicyLossOutput, aggregate_tokens, clipped_policy_loss


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
    kl_coef: float,
    loss_type: str = "dapo",
    tokens_per_update: float | None = None,
) -> PolicyLossOutput:
    """``aggregate(max(-A·ρ, -A·clip(ρ, 1±ε)) + kl_coef · k3(logp, ref_logp))`` over tokens.

    ``k3 = exp(ref - logp) - (ref - logp) - 1``. The average over tokens is
    :func:`leash.losses.ppo.aggregate_tokens` (TRL's default for GRPO is ``dapo``).

    Args:
        logp: (B, T) log-probs of the sampled tokens under the policy being trained.
        old_logp: (B, T) log-probs of the same tokens at rollout time.
        ref_logp: (B, T) log-probs of the same tokens under the reference.
        advantages: (B, T) advantages (the group-normalised score on every token).
        mask: (B, T) binary mask of real response tokens.
        clip_range: ε.
        kl_coef: β, the weight of the KL term.
        loss_type: "bnpo", "dapo" or "grpo" (see :func:`aggregate_tokens`).
        tokens_per_update: the ``dapo`` divisor.
    Returns:
        PolicyLossOutput: ``loss`` holds the KL term; the clip and ratio diagnostics are the
        surrogate's; ``per_token`` is surrogate + KL term.
    """
    surrogate = clipped_policy_loss(logp, old_logp, advantages, mask, clip_range)
    per_token = surrogate.per_token + kl_coef * kl_k3(logp, ref_logp)
    loss = aggregate_tokens(per_token, mask, loss_type, tokens_per_update)
    return surrogate._replace(loss=loss, per_token=per_token)
