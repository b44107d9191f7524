"""Best-of-N sampling from the reference, exactly: its distribution, KL and reward.

Best-of-N draws N responses from π_ref and keeps the one with the highest score (ties broken
uniformly among the tied samples). On an enumerable task its distribution is exact: with F the
reference's CDF of the score, the kept response's score is s with probability F(s)^N - F(s-)^N,
and within a score level the kept response is distributed like π_ref restricted to that level.
The score is the gold reward (a training-free point of comparison on the reward-KL plane, the
DPO paper's baseline) or any scorer's value on every response, such as a proxy reward model's
(:func:`response_scores`; the over-optimisation study of Gao et al. 2022, where the gold reward
of the kept response falls as N grows while its proxy score keeps rising). Its KL is exact too,
summed over the enumerated responses; for distinct scores it approaches log N - (N-1)/N from
below as the reference's largest probability goes to 0. How well a scorer agrees with the gold
reward on the policy's own samples is exact as well (:func:`ranking_accuracy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from leash.evaluation.oracle import ExactDistribution, ExactOracle, exact_gold_reward, exact_kl
from leash.rollout.rewards import LearnedReward


def best_of_n(
    reference: ExactDistribution, n: int, scores: torch.Tensor | None = None
) -> ExactDistribution:
    """The exact distribution of best-of-``n`` from ``reference``.

    Args:
        reference: the sampling policy's exact distribution (its gold rewards ride along).
        n: samples drawn per prompt, >= 1.
        scores: (M, N) what the best sample maximises; None: the gold reward.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    scores = reference.rewards if scores is None else scores.to(reference.rewards)
    if scores.shape != reference.rewards.shape:
        raise ValueError(f"scores must be (M, N) = {tuple(reference.rewards.shape)}")
    probs = reference.probs()
    log_probs = torch.full_like(reference.log_probs, float("-inf"))
    for row in range(probs.shape[0]):
        ordered, order = scores[row].sort()
        p = probs[row, order]
        levels, level_of, _ = torch.unique_consecutive(
            ordered, return_inverse=True, return_counts=True
        )
        level_mass = torch.zeros(len(levels), dtype=p.dtype).index_add_(0, level_of, p)
        cdf = level_mass.cumsum(0).clamp(max=1.0)
        below = torch.cat([cdf.new_zeros(1), cdf[:-1]])
        level_bon = cdf**n - below**n
        kept = level_bon[level_of] * p / level_mass[level_of].clamp(min=1e-300)
        log_probs[row, order] = kept.log()
    return ExactDistribution(log_probs, reference.rewards)


@dataclass(frozen=True)
class BestOfNPoint:
    """Best-of-N against one scorer, exactly: where it lands and what each reward says."""

    n: int
    kl: float
    """KL(best-of-N ‖ π_ref) in nats, averaged over prompts."""
    gold_reward: float
    """E[gold reward] of the kept response, averaged over prompts."""
    score: float
    """E[score] of the kept response (what it maximised), averaged over prompts."""


def best_of_n_point(reference: ExactDistribution, n: int, scores: torch.Tensor) -> BestOfNPoint:
    """Best-of-``n`` from ``reference`` under ``scores`` ((M, N), e.g. a proxy reward model's
    value of every response): its exact KL, gold reward and score."""
    kept = best_of_n(reference, n, scores)
    score = float((kept.probs() * scores.to(kept.log_probs)).sum(-1).mean())
    return BestOfNPoint(n, exact_kl(kept, reference), exact_gold_reward(kept), score)


@torch.no_grad()
def response_scores(
    oracle: ExactOracle, reward_model: torch.nn.Module, batch_size: int = 4096
) -> torch.Tensor:
    """(M, N) float64 score of every response of the oracle's space under each of its prompts,
    read as PPO reads it (:class:`~leash.rollout.rewards.LearnedReward`: the left-padded prompt,
    then the response's words and its EOS when it ends)."""
    space = oracle.space
    words, width = space.words, space.max_length
    lengths = (words >= 0).sum(1)
    ids = torch.full((len(space), width), oracle.eos_token_id)  # filler past the mask
    ids[words >= 0] = oracle.word_token_ids[words[words >= 0]]
    ended = space.ended.nonzero().squeeze(1)
    ids[ended, lengths[ended]] = oracle.eos_token_id
    mask = (torch.arange(width) < (lengths + space.ended.long())[:, None]).long()
    reward, device = LearnedReward(reward_model), next(reward_model.parameters()).device
    scores = torch.empty(len(oracle.prompts), len(space), dtype=torch.float64)
    for prompt in range(len(oracle.prompts)):
        for start in range(0, len(space), batch_size):
            chunk = slice(start, start + batch_size)
            count = len(ids[chunk])
            scores[prompt, chunk] = reward(
                oracle.prompt_ids[prompt].expand(count, -1).to(device),
                oracle.prompt_mask[prompt].expand(count, -1).to(device),
                ids[chunk].to(device),
                mask[chunk].to(device),
            ).double().cpu()
    return scores


def ranking_accuracy(reference: ExactDistribution, scores: torch.Tensor, rows: int = 512) -> float:
    """P(``scores`` order two independent samples of ``reference`` as its gold reward does),
    over the pairs whose gold rewards differ (a tie in score counts a half), averaged over
    prompts: a scorer's exact accuracy on fresh pairs of the policy, as a reward model's
    held-out accuracy is on sampled ones.

    Args:
        reference: the policy the pairs come from (and the gold rewards).
        scores: (M, N) the scorer's value of every response.
        rows: responses per block of the (N, N) pair table (memory).
    """
    probs, accuracies = reference.probs(), []
    for prompt in range(probs.shape[0]):
        p, s, g = probs[prompt], scores[prompt].to(probs), reference.rewards[prompt]
        agree = total = 0.0
        for start in range(0, len(p), rows):
            block = slice(start, start + rows)
            weight = p[block, None] * p[None, :]
            gold = torch.sign(g[block, None] - g[None, :])
            proxy = torch.sign(s[block, None] - s[None, :])
            differ = weight * (gold != 0)
            agree += float((differ * ((proxy == gold) + 0.5 * (proxy == 0))).sum())
            total += float(differ.sum())
        accuracies.append(agree / total)
    return sum(accuracies) / len(accuracies)
