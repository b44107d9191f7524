"""Best-of-N sampling from the reference, exactly: its distribution, KL and reward.

Best-of-N draws N responses from π_ref and keeps the one with the highest reward (ties broken
uniformly among the tied samples). On an enumerable task its distribution is exact: with F the
reference's reward CDF, the kept response's reward is r with probability F(r)^N - F(r-)^N, and
within a reward level the kept response is distributed like π_ref restricted to that level. It
is a training-free point of comparison on the reward-KL plane (the DPO paper's baseline).
"""

from __future__ import annotations

import torch

from leash.evaluation.oracle import ExactDistribution


def best_of_n(reference: ExactDistribution, n: int) -> ExactDistribution:
    """The exact distribution of best-of-``n`` from ``reference`` under its gold reward."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    probs = reference.probs()
    log_probs = torch.full_like(reference.log_probs, float("-inf"))
    for row in range(probs.shape[0]):
        rewards, order = reference.rewards[row].sort()
        p = probs[row, order]
        levels, level_of, _ = torch.unique_consecutive(
            rewards, return_inverse=True, return_counts=True
        )
        level_mass = torch.zeros(len(levels), dtype=p.dtype).index_add_(0, level_of, p)
        cdf = level_mass.cumsum(0).clamp(max=1.0)
        below = torch.cat([cdf.new_zeros(1), cdf[:-1]])
        level_bon = cdf**n - below**n
        kept = level_bon[level_of] * p / level_mass[level_of].clamp(min=1e-300)
        log_probs[row, order] = kept.log()
    return ExactDistribution(log_probs, reference.rewards)
