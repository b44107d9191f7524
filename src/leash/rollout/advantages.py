"""From a measured rollout to what the policy update optimises: shaped rewards, then advantages.

Shaping puts the per-token KL penalty on every response token and the sequence score on the
last one. :func:`advantages` is the one place that picks the estimator, by ``algo.advantage``:

- ``gae``: GAE over each response's shaped rewards and the critic's values (PPO);
- ``rloo``: sequence reward ``R = score - kl_coef · Σ KL``, minus the mean ``R`` of the other
  samples of the same prompt;
- ``grpo``: the score normalised within its prompt's group (the KL goes into the loss instead,
  :func:`leash.losses.grpo.grpo_loss`);
- ``reinforce``: ``R`` minus a moving-average baseline.

The critic-free ones give one advantage per response, on every token of it. :func:`policy_loss`
picks the matching loss (GRPO's carries the KL term; ``algo.loss_type`` averages the tokens).
Scores are the penalised ones (missing-EOS penalty included) for every estimator. Whitening
runs across processes when configured, so N processes take exactly the decisions of one process
holding the whole batch; the group estimators need no communication (a prompt's samples are
drawn by one process, adjacent).
"""

from __future__ import annotations

import torch

from leash.config import AdvantageEstimator, KLEstimator, LossType, PPOConfig
from leash.losses.advantages import (
    grpo_advantages,
    per_token,
    reinforce_advantages,
    rloo_advantages,
    sequence_rewards,
)
from leash.losses.grpo import grpo_loss
from leash.losses.kl import kl_penalty
from leash.losses.ppo import (
    Advantages,
    PolicyLossOutput,
    ShapedRewards,
    SumFn,
    aggregate_tokens,
    clipped_policy_loss,
    gae,
    masked_whiten,
    shape_rewards,
)
from leash.rollout.rollout import Rollout


def shape(rollout: Rollout, algo: PPOConfig, kl_coef: float, sum_fn: SumFn) -> ShapedRewards:
    """Per-token rewards: ``-kl_coef x KL`` (``algo.kl_estimator``) plus the score at the end,
    whitened across processes (mean kept) when ``algo.whiten_rewards``.

    Returns:
        ShapedRewards(rewards (B, T), non_score_reward (B, T), penalised_scores (B,)); only
        ``rewards`` is whitened.
    """
    kl = kl_penalty(rollout.logprobs, rollout.ref_logprobs, KLEstimator(algo.kl_estimator).value)
    shaped = shape_rewards(
        rollout.scores,
        kl,
        rollout.response_mask,
        kl_coef,
        algo.missing_eos_penalty,
        rollout.eos_found,
    )
    if not algo.whiten_rewards:
        return shaped
    whitened = masked_whiten(shaped.rewards, rollout.response_mask, False, sum_fn=sum_fn)
    return shaped._replace(rewards=whitened)


def sequence_advantages(
    rollout: Rollout, shaped: ShapedRewards, algo: PPOConfig, kl_coef: float, baseline: float
) -> torch.Tensor:
    """(B,) one advantage per response for a critic-free ``algo.advantage``."""
    estimator = AdvantageEstimator(algo.advantage)
    if estimator == AdvantageEstimator.grpo:
        return grpo_advantages(shaped.penalised_scores, algo.samples_per_prompt)
    kl = kl_penalty(rollout.logprobs, rollout.ref_logprobs, KLEstimator(algo.kl_estimator).value)
    rewards = sequence_rewards(shaped.penalised_scores, kl, rollout.response_mask, kl_coef)
    if estimator == AdvantageEstimator.rloo:
        return rloo_advantages(rewards, algo.samples_per_prompt)
    if estimator == AdvantageEstimator.reinforce:
        return reinforce_advantages(rewards, baseline)
    raise ValueError(f"{estimator.value} is not a critic-free estimator")


def advantages(
    rollout: Rollout,
    shaped: ShapedRewards,
    algo: PPOConfig,
    sum_fn: SumFn,
    *,
    kl_coef: float,
    baseline: float = 0.0,
) -> Advantages:
    """The advantages of ``algo.advantage``, whitened across processes if configured.

    Args:
        rollout: the measured rollout (values are read by GAE only).
        shaped: :func:`shape` of it (GAE reads the per-token rewards, the others the scores).
        algo: the estimator and its settings.
        sum_fn: sums a tensor over processes.
        kl_coef: the KL coefficient of this iteration (RLOO's and REINFORCE's sequence reward).
        baseline: REINFORCE's moving average b before this iteration (others ignore it).
    Returns:
        Advantages: (B, T) advantages; for GAE the critic's targets ``A + V`` from the raw
        (unwhitened) advantages, None for the critic-free estimators.
    """
    mask = rollout.response_mask
    if AdvantageEstimator(algo.advantage) == AdvantageEstimator.gae:
        out = gae(shaped.rewards, rollout.values, mask, algo.gamma, algo.lam)
    else:
        per_sequence = sequence_advantages(rollout, shaped, algo, kl_coef, baseline)
        out = Advantages(per_token(per_sequence, mask), None)
    if not algo.whiten_advantages:
        return out
    whitened = masked_whiten(out.advantages, mask, True, sum_fn=sum_fn)
    return Advantages(whitened, out.returns)


def tokens_per_update(
    mask: torch.Tensor, num_minibatches: int, sum_fn: SumFn, world_size: int
) -> float:
    """The ``loss_type=dapo`` divisor: the rollout's real tokens on every process / (updates
    per rollout x processes), one constant for every minibatch of the rollout."""
    total = sum_fn((mask > 0).sum().to(torch.float32))
    return float(total) / (num_minibatches * world_size)


def policy_loss(
    logps: torch.Tensor,
    batch: Rollout,
    advantages: torch.Tensor,
    algo: PPOConfig,
    kl_coef: float,
    tokens_per_update: float | None,
) -> PolicyLossOutput:
    """The policy loss of ``algo.advantage`` on a minibatch: GRPO's clipped surrogate with the
    KL term; for the others PPO's clipped surrogate, averaged over tokens by ``algo.loss_type``.

    Args:
        logps: (B, T) log-probs of the minibatch's tokens under the policy being trained.
        batch: the minibatch's rollout rows (old and reference log-probs, mask).
        advantages: (B, T) their advantages.
        algo: clip range, estimator and loss type.
        kl_coef: GRPO's KL weight (this iteration's coefficient).
        tokens_per_update: the ``dapo`` divisor (:func:`tokens_per_update`).
    """
    mask, loss_type = batch.response_mask, LossType(algo.loss_type)
    if AdvantageEstimator(algo.advantage) == AdvantageEstimator.grpo:
        return grpo_loss(
            logps, batch.logprobs, batch.ref_logprobs, advantages, mask, algo.clip_range,
            kl_coef, loss_type.value, tokens_per_update,
        )
    surrogate = clipped_policy_loss(logps, batch.logprobs, advantages, mask, algo.clip_range)
    if loss_type == LossType.bnpo:  # clipped_policy_loss's own token mean
        return surrogate
    loss = aggregate_tokens(surrogate.per_token, mask, loss_type.value, tokens_per_update)
    return surrogate._replace(loss=loss)
