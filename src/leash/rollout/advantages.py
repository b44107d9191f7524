"""From a measured rollout to what the PPO update optimises: shaped rewards, then advantages.

Shaping puts the per-token KL penalty on every response token and the sequence score on the
last one; advantages are GAE over each response. Both whiten across processes when configured,
so N processes take exactly the decisions of one process holding the whole batch.
"""

from __future__ import annotations

import torch

from leash.config import KLEstimator, PPOConfig
from leash.losses.kl import kl_penalty
from leash.losses.ppo import Advantages, ShapedRewards, SumFn, gae, masked_whiten, shape_rewards
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


def advantages(
    rollout: Rollout, rewards: torch.Tensor, algo: PPOConfig, sum_fn: SumFn
) -> Advantages:
    """GAE over each response, with the advantages whitened across processes if configured.

    Returns are ``A + V`` from the raw (unwhitened) advantages, as the critic's targets.
    """
    out = gae(rewards, rollout.values, rollout.response_mask, algo.gamma, algo.lam)
    if not algo.whiten_advantages:
        return out
    whitened = masked_whiten(out.advantages, rollout.response_mask, True, sum_fn=sum_fn)
    return Advantages(whitened, out.returns)
