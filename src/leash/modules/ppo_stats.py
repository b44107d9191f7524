"""PPO bookkeeping beside the loop: minibatch diagnostics, rollout statistics, timing, reduction,
and the policy's implicit rewards on held-out pairs.

Metric definitions follow TRL's PPO trainer and summarize_from_feedback_details (the names are
the vocabulary of ``DESIGN.md``); every figure is reduced over processes in one all-reduce.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch

from leash.data.types import PreferenceBatch
from leash.losses.kl import kl_penalty
from leash.losses.ppo import ShapedRewards, SumFn
from leash.models.logprobs import PairLogps, pair_logps
from leash.models.policy_critic import PolicyCritic
from leash.rollout.rollout import Rollout


class MinibatchStats(NamedTuple):
    """Diagnostics of one minibatch update (detached scalars)."""

    epoch: int
    minibatch: int
    policy_loss: torch.Tensor
    value_loss: torch.Tensor | None
    """The critic's clipped value loss; None without a critic."""
    entropy: torch.Tensor
    """Mean per-token entropy of the policy being trained."""
    approxkl: torch.Tensor
    """k2 estimate of KL(old || new) over the minibatch's tokens."""
    clipfrac: torch.Tensor
    """Fraction of tokens where the policy ratio clip was active."""
    value_clipfrac: torch.Tensor | None
    """Fraction of tokens where the value clip was active; None without a critic."""
    ratio: torch.Tensor
    """Mean probability ratio new / old."""


SUMMED_METRICS = frozenset({"val/num_eos_tokens", "throughput/generation_tokens_per_s"})
"""Metrics summed over processes; every other one is averaged."""


def rollout_metrics(rollout: Rollout, shaped: ShapedRewards) -> dict[str, torch.Tensor]:
    """This process's rollout statistics (TRL's definitions; KL and entropy per sequence).

    ``objective/kl`` sums the k1 estimate over each response and ``objective/kl_k3`` the k3
    one, whatever estimator shapes the reward; ``objective/entropy`` sums the exact per-token
    entropy of the sampling policy; ``objective/rlhf_reward`` is the penalised score plus the
    KL part of the reward; ``val/num_eos_tokens`` counts responses that ended with EOS;
    ``rollout/logprob_gap`` is the mean, over response tokens, of |log-prob the sampler drew a
    token at - log-prob the trainer's forward gives it|: about 1e-7 in float32 with the
    built-in sampler, and large when the sampler's weights, precision or masking differ from
    the trainer's (a stale rollout engine cannot pass unnoticed).
    """
    mask = rollout.response_mask
    per_sequence = functools.partial(torch.sum, dim=1)
    kl_k1 = per_sequence(kl_penalty(rollout.logprobs, rollout.ref_logprobs, "k1") * mask)
    kl_k3 = per_sequence(kl_penalty(rollout.logprobs, rollout.ref_logprobs, "k3") * mask)
    non_score = per_sequence(shaped.non_score_reward)
    gap = {}
    if rollout.sampler_logprobs is not None:
        apart = (rollout.sampler_logprobs - rollout.logprobs).abs() * mask
        gap = {"rollout/logprob_gap": apart.sum() / mask.sum().clamp(min=1)}
    return gap | {
        "objective/kl": kl_k1.mean(),
        "objective/kl_k3": kl_k3.mean(),
        "objective/entropy": per_sequence(rollout.entropy).mean(),
        "objective/non_score_reward": non_score.mean(),
        "objective/scores": rollout.scores.mean(),
        "objective/rlhf_reward": (shaped.penalised_scores + non_score).mean(),
        "val/num_eos_tokens": rollout.eos_found.sum().float(),
    }


VALUE_METRICS = frozenset({"loss/value_avg", "val/clipfrac_avg"})
"""The critic's metrics: absent (not zero) when the estimator has no critic."""


def update_metrics(updates: list[MinibatchStats]) -> dict[str, torch.Tensor]:
    """Averages of the minibatch diagnostics over every update of the iteration; without a
    critic (``value_loss`` None) the :data:`VALUE_METRICS` are left out."""

    def average(name: str) -> torch.Tensor:
        return torch.stack([getattr(stats, name) for stats in updates]).mean()

    sources = {
        "policy/approxkl_avg": "approxkl",
        "policy/clipfrac_avg": "clipfrac",
        "policy/entropy_avg": "entropy",
        "loss/policy_avg": "policy_loss",
        "loss/value_avg": "value_loss",
        "val/clipfrac_avg": "value_clipfrac",
        "val/ratio": "ratio",
    }
    critic = updates[0].value_loss is not None
    return {
        metric: average(field)
        for metric, field in sources.items()
        if critic or metric not in VALUE_METRICS
    }


@torch.no_grad()
def implicit_rewards(
    models: PolicyCritic,
    batch: PreferenceBatch,
    beta: float,
    allowed_token_ids: torch.Tensor | None = None,
) -> PairLogps:
    """The policy's implicit reward ``beta · (log pi(y|x) - log pi_ref(y|x))`` of both responses
    of every pair, summed over response tokens.

    The KL-regularised RL objective that PPO, RLOO and GRPO maximise (reward minus ``beta`` =
    ``kl_coef`` times the KL to ``pi_ref``) has the optimum ``pi* ∝ pi_ref · exp(r / beta)``, so
    ``beta · log pi*/pi_ref`` is ``r`` up to a prompt-only term (``-beta · log Z(x)``) that
    cancels in a pair: the policy read as a reward model, exactly as DPO reads its own. The
    accuracy of its ranking does not depend on ``beta > 0``. Log-probs are those of the policy
    itself (temperature 1, as the DPO family and the evaluator read it), from the reference of
    either memory mode (a frozen copy, or the base with its adapters disabled).

    Args:
        models: the policy and its reference.
        batch: preference pairs.
        beta: the KL coefficient.
        allowed_token_ids: (A,) the policy's token restriction.
    Returns:
        chosen (B,) and rejected (B,) implicit rewards, float32.
    """
    pairs = batch.concatenated()
    policy = pair_logps(models.policy, *pairs, allowed_token_ids)[0]
    with models.reference.scope() as reference:
        base = pair_logps(reference, *pairs, allowed_token_ids)[0]
    return PairLogps(
        beta * (policy.chosen - base.chosen), beta * (policy.rejected - base.rejected)
    )


@dataclass
class Stopwatch:
    """Seconds spent in a ``with stopwatch(device)`` block (after the device caught up)."""

    seconds: float = 0.0


@contextmanager
def stopwatch(device: torch.device) -> Iterator[Stopwatch]:
    """Time a block; on CUDA, wait for queued kernels at both ends so the time is the block's."""
    watch = Stopwatch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield watch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    watch.seconds = time.perf_counter() - start




def reduce_metrics(
    tensors: dict[str, torch.Tensor],
    floats: dict[str, float],
    sum_fn: SumFn,
    world_size: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Average (or, for :data:`SUMMED_METRICS`, sum) every metric over processes in one
    all-reduce; algorithm metrics get the ``train/`` prefix, time and throughput do not.

    Args:
        tensors: this process's algorithm metrics (scalars).
        floats: this process's time and throughput figures.
        sum_fn: sums a tensor over processes.
        world_size: number of processes.
        device: where the all-reduce runs.
    """
    values = {**tensors, **{name: torch.tensor(value) for name, value in floats.items()}}
    names = list(values)
    totals = sum_fn(torch.stack([values[n].float().to(device) for n in names]))
    return {
        (name if name in floats else f"train/{name}"):
            total if name in SUMMED_METRICS else total / world_size
        for name, total in zip(names, totals, strict=True)
    }
