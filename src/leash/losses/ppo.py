"""Pure PPO-RLHF maths: masked statistics, reward shaping, GAE and the clipped losses.

The critic-free estimators (RLOO, GRPO, REINFORCE) live in ``leash.losses.advantages`` and the
GRPO loss in ``leash.losses.grpo``.

Shapes: ``B`` rollouts, ``T`` response tokens, right padded. ``mask`` (B, T) is 1 on response
tokens that exist (the EOS token included) and 0 on the padding after it; it may be float or
bool but must be binary. Every reduction over tokens ignores the masked-out positions, whatever
values they hold. The KL estimators and the KL controllers live in ``leash.losses.kl``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

SumFn = Callable[[torch.Tensor], torch.Tensor]
"""Sums a tensor over every process (the identity in a single process)."""


# ---------------------------------------------------------------------------- masked statistics
def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is set, so padding never counts.

    An empty mask (along ``dim``) gives 0, not NaN: an all-padding minibatch adds nothing.

    Args:
        values: (B, T) values to average.
        mask: (B, T) binary mask of the positions that count.
        dim: reduce along this dimension only; None reduces everything to a scalar.
    Returns:
        a scalar, or the tensor reduced along ``dim`` (e.g. (B,) for ``dim=1``).
    """
    real = mask > 0
    masked = torch.where(real, values, 0.0)
    if dim is None:
        return masked.sum() / real.sum().clamp(min=1)
    return masked.sum(dim) / real.sum(dim).clamp(min=1)


def _local_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over processes when there is one process: the identity."""
    return tensor


def _masked_moments(
    values: torch.Tensor, mask: torch.Tensor, sum_fn: SumFn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, sum of squared deviations and count of the masked values of every process."""
    real = mask > 0
    totals = sum_fn(torch.stack([torch.where(real, values, 0.0).sum(), real.sum().to(values)]))
    count = totals[1]
    if count < 2:
        raise ValueError(
            f"unbiased masked variance needs at least 2 masked-in values, got {int(count)}"
        )
    mean = totals[0] / count
    squares = sum_fn(torch.where(real, (values - mean).square(), 0.0).sum())
    return mean, squares, count


def masked_var(
    values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True, sum_fn: SumFn = _local_sum
) -> torch.Tensor:
    """Variance of ``values`` over the masked positions (all of them, of every process).

    Args:
        values: (B, T) values.
        mask: (B, T) binary mask of the positions that count.
        unbiased: apply Bessel's correction ``n / (n - 1)`` (n = masked positions).
        sum_fn: sums a tensor over processes (the identity in one process).
    Returns:
        scalar variance.
    Raises:
        ValueError: when fewer than 2 positions are masked in.
    """
    _, squares, count = _masked_moments(values, mask, sum_fn)
    return squares / (count - 1 if unbiased else count)


def masked_whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
    sum_fn: SumFn = _local_sum,
) -> torch.Tensor:
    """Normalise ``values`` to unit (unbiased) variance over the mask, as PPO does to advantages.

    With ``sum_fn`` an all-reduce, the mean and variance are those of every process's masked
    values together, so N processes whiten exactly like one process holding the whole batch.
    Masked-out positions are set to 0 in the output, so padding cannot leak into later sums.

    Args:
        values: (B, T) values to whiten.
        mask: (B, T) binary mask; only these positions set the mean and variance.
        shift_mean: subtract the mean (True) or keep it, scaling only the spread (False).
        eps: added to the variance before the square root.
        sum_fn: sums a tensor over processes (the identity in one process).
    Returns:
        (B, T) whitened values, 0 where ``mask`` is 0.
    Raises:
        ValueError: when fewer than 2 positions are masked in.
    """
    mean, squares, count = _masked_moments(values, mask, sum_fn)
    whitened = (values - mean) * torch.rsqrt(squares / (count - 1) + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask > 0, whitened, 0.0)


# ----------------------------------------------------------------------------- reward shaping
class ShapedRewards(NamedTuple):
    """Per-token rewards of a rollout batch and their parts."""

    rewards: torch.Tensor
    """(B, T) KL penalty on every real token plus the penalised score on the last real one."""
    non_score_reward: torch.Tensor
    """(B, T) the KL part alone, ``-kl_coef·kl`` on real tokens and 0 on padding."""
    penalised_scores: torch.Tensor
    """(B,) scores after the missing-EOS penalty."""


def shape_rewards(
    scores: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    missing_eos_penalty: float | None,
    eos_found: torch.Tensor,
) -> ShapedRewards:
    """Turn sequence scores into per-token rewards: ``-kl_coef·kl`` everywhere, score at the end.

    The score lands on the last real token of each response: the EOS token when there is one,
    else the last token before the length cut. A response without EOS has its score reduced
    by ``missing_eos_penalty`` once (not per token). A row with no real token at all gets no
    reward (no token can carry its score); its penalised score is still returned for logging.

    Args:
        scores: (B,) reward-model (or gold) score of each response.
        kl: (B, T) per-token KL estimate (see ``leash.losses.kl``); padding values are ignored.
        mask: (B, T) binary mask of real response tokens.
        kl_coef: weight of the KL penalty.
        missing_eos_penalty: subtracted from the score of responses without EOS; None disables.
        eos_found: (B,) bool, whether each response contains the EOS token.
    Returns:
        ShapedRewards(rewards (B, T), non_score_reward (B, T), penalised_scores (B,)).
    """
    real = mask > 0
    non_score_reward = torch.where(real, -kl_coef * kl, 0.0)
    penalised_scores = penalise_missing_eos(scores, eos_found, missing_eos_penalty)
    positions = torch.arange(mask.shape[1], device=mask.device)
    last_real = torch.where(real, positions, -1).amax(dim=1)  # (B,), -1 when the row is empty
    at_last = positions == last_real.unsqueeze(1)
    score_reward = torch.where(at_last, penalised_scores.unsqueeze(1), 0.0)
    return ShapedRewards(non_score_reward + score_reward, non_score_reward, penalised_scores)


def penalise_missing_eos(
    scores: torch.Tensor, eos_found: torch.Tensor, penalty: float | None
) -> torch.Tensor:
    """``scores - penalty`` for responses cut at the length limit without EOS (TRL's
    ``missing_eos_penalty``), the scores unchanged where they ended or ``penalty`` is None."""
    if penalty is None:
        return scores
    return torch.where(eos_found, scores, scores - penalty)


# ------------------------------------------------------------------------------------------ GAE
class Advantages(NamedTuple):
    """Advantages and, with a critic (GAE), the value targets built from them."""

    advantages: torch.Tensor
    """(B, T) A_t, 0 on padding."""
    returns: torch.Tensor | None
    """(B, T) A_t + V_t (the critic's regression target), 0 on padding; None without a critic."""


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> Advantages:
    """Generalised advantage estimation (Schulman et al. 2016) over each response.

    ``δ_t = r_t + γ·V_{t+1} - V_t`` with ``V = 0`` past the last real token (the episode ends
    there), and ``A_t = δ_t + γ·λ·A_{t+1}`` backwards from the end. Inputs are rollout-time
    quantities: pass them detached. Assumes right padding (no hole inside a response).

    Args:
        rewards: (B, T) per-token rewards (e.g. ``shape_rewards(...).rewards``).
        values: (B, T) critic values at each token.
        mask: (B, T) binary mask of real response tokens.
        gamma: discount γ.
        lam: GAE λ (0: one-step TD, 1: Monte Carlo minus the value).
    Returns:
        Advantages(advantages (B, T), returns (B, T)).
    """
    real = mask > 0
    rewards = torch.where(real, rewards, 0.0)
    values = torch.where(real, values, 0.0)
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = rewards + gamma * next_values - values
    running = torch.zeros_like(deltas[:, 0])
    backwards = []
    for t in reversed(range(deltas.shape[1])):
        running = deltas[:, t] + gamma * lam * running
        backwards.append(running)
    advantages = torch.where(real, torch.stack(backwards[::-1], dim=1), 0.0)
    return Advantages(advantages, torch.where(real, advantages + values, 0.0))


# -------------------------------------------------------------------------------- clipped losses
class PolicyLossOutput(NamedTuple):
    """Clipped surrogate loss and its diagnostics (the diagnostics carry no gradient)."""

    loss: torch.Tensor
    """Scalar loss to minimise."""
    clipfrac: torch.Tensor
    """Scalar fraction of real tokens where the clipped term was the larger (active clip)."""
    approxkl: torch.Tensor
    """Scalar k2 estimate ``½·(logp - old_logp)²`` of KL(old ‖ new), averaged over real tokens."""
    ratio_mean: torch.Tensor
    """Scalar mean probability ratio π/π_old over real tokens."""
    per_token: torch.Tensor
    """(B, T) the pessimistic surrogate at each token (with gradients), before any average."""


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> PolicyLossOutput:
    """PPO's pessimistic clipped surrogate: ``mean(max(-A·ρ, -A·clip(ρ, 1-ε, 1+ε)))``.

    Args:
        logp: (B, T) log-probs of the sampled tokens under the policy being trained.
        old_logp: (B, T) log-probs of the same tokens at rollout time.
        advantages: (B, T) advantages (usually whitened).
        mask: (B, T) binary mask of real response tokens.
        clip_range: ε.
    Returns:
        PolicyLossOutput(loss, clipfrac, approxkl, ratio_mean: scalars; per_token: (B, T)). The
        loss is the token mean over the batch (TRL's ``bnpo``; see :func:`aggregate_tokens`).
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    per_token = torch.maximum(unclipped, clipped)
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approxkl = masked_mean(0.5 * log_ratio.square(), mask)
        ratio_mean = masked_mean(ratio, mask)
    return PolicyLossOutput(loss, clipfrac, approxkl, ratio_mean, per_token)


def aggregate_tokens(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    loss_type: str,
    tokens_per_update: float | None = None,
) -> torch.Tensor:
    """One loss from per-token losses, by TRL 1.16's ``loss_type`` names.

    - ``bnpo``: the mean over this minibatch's real tokens (PPO's, :func:`clipped_policy_loss`).
    - ``dapo``: the sum over this minibatch's real tokens divided by ``tokens_per_update``, the
      rollout's real tokens (every process) / (updates per rollout x processes): one constant
      for every minibatch of a rollout, as TRL's GRPOTrainer default divides by the generation
      batch's tokens.
    - ``grpo``: each sequence's token mean, then the mean over sequences (length-biased).

    Args:
        per_token: (B, T) losses; padding values are ignored.
        mask: (B, T) binary mask of real response tokens.
        loss_type: "bnpo", "dapo" or "grpo".
        tokens_per_update: the ``dapo`` divisor (required for it, unused otherwise).
    Returns:
        scalar loss.
    """
    if loss_type == "bnpo":
        return masked_mean(per_token, mask)
    if loss_type == "grpo":
        return masked_mean(per_token, mask, dim=1).mean()
    if loss_type == "dapo":
        if tokens_per_update is None:
            raise ValueError("loss_type dapo needs tokens_per_update")
        return torch.where(mask > 0, per_token, 0.0).sum() / max(tokens_per_update, 1.0)
    raise ValueError(f"unknown loss_type {loss_type!r}; expected bnpo, dapo or grpo")


class ValueLossOutput(NamedTuple):
    """Clipped value loss and how often its clip was active (no gradient)."""

    loss: torch.Tensor
    """Scalar loss to minimise."""
    clipfrac: torch.Tensor
    """Scalar fraction of real tokens where V left the range and the clipped error was the
    larger (the loss's clipped branch)."""


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> ValueLossOutput:
    """Critic loss ``½·mean(max((V - R)², (clip(V, V_old ± ε) - R)²))``, PPO's trust region for V.

    Args:
        values: (B, T) critic values being trained.
        old_values: (B, T) critic values at rollout time.
        returns: (B, T) value targets (``gae(...).returns``).
        mask: (B, T) binary mask of real response tokens.
        clip_range_value: ε, the largest move of V from V_old that still lowers the loss.
    Returns:
        ValueLossOutput(loss, clipfrac), both scalars.
    """
    step = values - old_values
    clipped_values = old_values + step.clamp(-clip_range_value, clip_range_value)
    unclipped_error = (values - returns).square()
    clipped_error = (clipped_values - returns).square()
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    with torch.no_grad():  # inside the range the two errors differ by rounding only: not a clip
        clipped = (step.abs() > clip_range_value) & (clipped_error > unclipped_error)
        clipfrac = masked_mean(clipped.float(), mask)
    return ValueLossOutput(loss, clipfrac)


# ------------------------------------------------------------------------------------- entropy
def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax distribution at each position, for the entropy metric and bonus.

    Uses ``H = logsumexp(z) - Σ softmax(z)·z`` in float32, which never exponentiates a large
    logit. Logits must be finite.

    Args:
        logits: (B, T, V) unnormalised scores.
    Returns:
        (B, T) entropies in nats.
    """
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(-1)
