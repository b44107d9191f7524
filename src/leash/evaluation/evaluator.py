"""The common evaluator: every algorithm's policy measured the same way on the same prompts.

It samples responses to held-out prompts with fixed settings and a fixed seed, then reports
what the policy buys and how far it moved:

- scores of the samples (:mod:`leash.evaluation.scores`): the task's gold reward, the proxy
  reward model (``eval/rm_score``), an independent judge (``eval/judge_score``), and the
  response length beside them;
- the same scores of the reference's samples (drawn once, with the same random stream, so the
  SFT policy evaluated alone gets exactly these samples) and the **win rate** of the policy's
  samples against them (:mod:`leash.evaluation.win_rate`);
- the sequence-level KL to the reference on the samples (k1 and k3); on the enumerable task the
  exact KL, the exact expected gold reward and the gap to the exact optimal reward-KL frontier.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from leash.config import EvalConfig
from leash.data.tasks import SyntheticTask
from leash.data.types import Samples
from leash.evaluation.oracle import (
    MAX_RESPONSES,
    ExactDistribution,
    ExactOracle,
    Frontier,
    exact_gold_reward,
    exact_kl,
    frontier,
    frontier_gap,
    optimal_point,
)
from leash.evaluation.scores import SampleScores, Scorers
from leash.evaluation.win_rate import win_rate
from leash.models.judge import Judge
from leash.models.logprobs import response_token_logps
from leash.models.reference import Reference
from leash.rollout.generation import sample_responses
from leash.sequences import evaluating, left_pad, right_pad

FRONTIER_REPORT_BETA = 0.1
"""β of the optimal point reported beside every exact evaluation."""


@dataclass(frozen=True)
class EvalContext:
    """What the evaluator needs besides the policy; built by a recipe from ready objects."""

    tokenizer: PreTrainedTokenizerBase
    prompts: list[str]
    """Held-out prompts (text, what a judge reads)."""
    prompt_ids: list[list[int]] | None = None
    """The same prompts as the policy's token ids (the data module's encoding, truncation
    included); None encodes ``prompts`` with the tokenizer."""
    task: SyntheticTask | None = None
    """The built-in task: gold reward, allowed tokens, and (if enumerable) the exact oracle."""
    reference: Reference | None = None
    """The reference policy; None when the evaluated policy is its own reference (SFT)."""
    reward_model: torch.nn.Module | None = None
    """The proxy reward model that scores samples (``eval/rm_score``)."""
    judge: Judge | None = None
    """An independent judge with its own tokenizer (``eval/judge_score``)."""


@dataclass(frozen=True)
class SampleRow:
    """One sampled response, for the samples table."""

    prompt: str
    response: str
    gold_reward: float | None
    rm_score: float | None
    judge_score: float | None
    length: int
    """Response tokens, EOS included."""
    log_ratio: float


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a policy."""

    metrics: dict[str, float]
    """``eval/*`` figures."""
    samples: list[SampleRow]
    """The first ``eval.table_rows`` sampled responses with their scores."""
    frontier: Frontier | None = None
    """The exact optimal reward-KL curve from the reference (enumerable tasks only)."""


def _is_enumerable(task: SyntheticTask | None) -> bool:
    if task is None:
        return False
    cfg = task.config
    size = sum(cfg.response_vocab_size**k for k in range(cfg.max_response_length))
    return size + cfg.response_vocab_size**cfg.max_response_length <= MAX_RESPONSES


class PolicyEvaluator:
    """Evaluates policies against one fixed context; reference-side results are computed once."""

    def __init__(self, context: EvalContext, settings: EvalConfig):
        self.context = context
        self.settings = settings
        self.prompts = context.prompts[: settings.max_prompts]
        tokenizer = context.tokenizer
        ids = context.prompt_ids or [tokenizer(p)["input_ids"] for p in context.prompts]
        self.prompt_ids = ids[: settings.max_prompts]
        task = context.task
        self.allowed_token_ids = task.allowed_token_ids() if task is not None else None
        self.max_new_tokens = (
            task.config.max_response_length if task is not None else settings.max_new_tokens
        )
        self.scorers = Scorers(tokenizer, task, context.reward_model, context.judge,
                               settings.batch_size)
        self._reference_samples: tuple[Samples, SampleScores] | None = None
        self._reference_distribution: ExactDistribution | None = None
        self._frontier: Frontier | None = None

    @functools.cached_property
    def oracle(self) -> ExactOracle | None:
        """The exact oracle of an enumerable task over the evaluated prompts (built when first
        read)."""
        task = self.context.task
        if not _is_enumerable(task):
            return None
        return ExactOracle.for_task(task, self.prompts, self.context.tokenizer)

    # ------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def evaluate(self, policy: torch.nn.Module) -> Evaluation:
        """Sample, score and (on the exact task) enumerate; return metrics and sample rows."""
        with evaluating(policy):
            samples = self._sample(policy)
            prompt_ids = [self.prompt_ids[i] for i in samples.prompt_index]
            policy_logps = self._sequence_logps(policy, prompt_ids, samples.response_ids)
        reference_logps = self._reference_logps(policy, prompt_ids, samples.response_ids)
        log_ratio = policy_logps - reference_logps
        scores = self._score(samples)
        reference_samples, reference_scores = self._reference_side(policy, samples, scores)
        metrics = {
            "eval/kl": float(log_ratio.mean()),
            "eval/kl_k3": float((torch.expm1(-log_ratio) + log_ratio).mean()),
            "eval/response_length": sum(map(len, samples.response_ids)) / len(samples),
            "eval/eos_fraction": sum(samples.ended) / len(samples),
            **score_metrics(scores, reference_scores, samples.prompt_index),
        }
        curve = None
        if self.oracle is not None:
            exact, curve = self._exact_metrics(policy)
            metrics.update(exact)
        rows = self._rows(samples, scores, log_ratio)
        return Evaluation(metrics, rows, curve)

    def _sample(self, model: torch.nn.Module) -> Samples:
        """``num_samples`` responses per prompt, from the fixed sampling stream."""
        settings = self.settings
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(settings.seed)
        return sample_responses(
            model,
            self.context.tokenizer,
            self.prompt_ids,
            settings.num_samples,
            self.max_new_tokens,
            temperature=settings.temperature,
            generator=generator,
            allowed_token_ids=self.allowed_token_ids,
            batch_size=settings.batch_size,
        )

    def _score(self, samples: Samples) -> SampleScores:
        prompt_ids = [self.prompt_ids[i] for i in samples.prompt_index]
        texts = [self.prompts[i] for i in samples.prompt_index]
        return self.scorers.score(prompt_ids, texts, samples)

    def _reference_side(
        self, policy: torch.nn.Module, samples: Samples, scores: SampleScores
    ) -> tuple[Samples, SampleScores]:
        """The reference's samples and scores: the policy's own when it is its own reference,
        else drawn once with the same random stream (the reference is frozen)."""
        if self.context.reference is None:
            return samples, scores
        if self._reference_samples is None:
            with self.context.reference.scope() as reference, evaluating(reference):
                reference_samples = self._sample(reference)
            self._reference_samples = reference_samples, self._score(reference_samples)
        return self._reference_samples

    def _rows(
        self, samples: Samples, scores: SampleScores, log_ratio: torch.Tensor
    ) -> list[SampleRow]:
        """The first ``table_rows`` samples with every score they have."""

        def value(column: torch.Tensor | None, i: int) -> float | None:
            return None if column is None else float(column[i])

        return [
            SampleRow(
                prompt=self.prompts[samples.prompt_index[i]],
                response=samples.text[i] + ("" if samples.ended[i] else " [cut]"),
                gold_reward=value(scores.gold, i),
                rm_score=value(scores.proxy, i),
                judge_score=value(scores.judge, i),
                length=len(samples.response_ids[i]),
                log_ratio=float(log_ratio[i]),
            )
            for i in range(min(len(samples), self.settings.table_rows))
        ]

    def _sequence_logps(
        self, model: torch.nn.Module, prompts: list[list[int]], responses: list[list[int]]
    ) -> torch.Tensor:
        """(N,) summed log π(y|x) of each sampled response, in batches."""
        pad = self.context.tokenizer.pad_token_id
        device = next(model.parameters()).device
        step = self.settings.batch_size
        totals = []
        for start in range(0, len(prompts), step):
            prompt_ids, prompt_mask = left_pad(prompts[start : start + step], pad)
            response_ids, response_mask = right_pad(responses[start : start + step], pad)
            logps = response_token_logps(
                model,
                prompt_ids.to(device),
                prompt_mask.to(device),
                response_ids.to(device),
                response_mask.to(device),
                self.allowed_token_ids,
            )
            totals.append(logps.sum(-1).double().cpu())
        return torch.cat(totals)

    def _reference_logps(self, policy, prompts, responses) -> torch.Tensor:
        if self.context.reference is None:  # the policy is its own reference
            with evaluating(policy):
                return self._sequence_logps(policy, prompts, responses)
        with self.context.reference.scope() as reference, evaluating(reference):
            return self._sequence_logps(reference, prompts, responses)

    # ---------------------------------------------------------------------------------- exact
    def _exact_metrics(self, policy: torch.nn.Module) -> tuple[dict[str, float], Frontier]:
        with evaluating(policy):
            distribution = self.oracle.distribution(policy)
        reference = self._exact_reference(distribution)
        curve = self._frontier if self._frontier is not None else frontier(reference)
        if self.context.reference is not None:
            self._frontier = curve
        kl = exact_kl(distribution, reference)
        reward = exact_gold_reward(distribution)
        optimum_kl, optimum_reward = optimal_point(reference, FRONTIER_REPORT_BETA)
        metrics = {
            "eval/exact_kl": kl,
            "eval/exact_gold_reward": reward,
            "eval/frontier_gap": frontier_gap(kl, reward, curve),
            "eval/reference_exact_gold_reward": exact_gold_reward(reference),
            "eval/optimum_beta0.1_kl": optimum_kl,
            "eval/optimum_beta0.1_gold_reward": optimum_reward,
        }
        return metrics, curve

    def _exact_reference(self, policy_distribution: ExactDistribution) -> ExactDistribution:
        """The reference's exact distribution, enumerated once (it is frozen)."""
        if self.context.reference is None:
            return policy_distribution
        if self._reference_distribution is None:
            with self.context.reference.scope() as reference, evaluating(reference):
                self._reference_distribution = self.oracle.distribution(reference)
        return self._reference_distribution


SCORE_NAMES = {"gold": "gold_reward", "proxy": "rm_score", "judge": "judge_score"}
"""Metric name of each score (``eval/<name>``, ``eval/reference_<name>``)."""


def score_metrics(
    policy: SampleScores, reference: SampleScores, prompt_index: list[int]
) -> dict[str, float]:
    """Mean scores of the policy and of the reference, the reference's response length, and
    the win rates: ``eval/win_rate`` by the judge (else the proxy), ``eval/gold_win_rate`` by
    the gold reward, each with its standard error over prompts (``..._se``)."""
    metrics = {"eval/reference_response_length": float(reference.lengths.mean())}
    for field, name in SCORE_NAMES.items():
        ours, theirs = getattr(policy, field), getattr(reference, field)
        if ours is not None:
            metrics[f"eval/{name}"] = float(ours.mean())
            metrics[f"eval/reference_{name}"] = float(theirs.mean())
    comparisons = {"win_rate": (policy.preferred(), reference.preferred()),
                   "gold_win_rate": (policy.gold, reference.gold)}
    for name, (ours, theirs) in comparisons.items():
        if ours is not None:
            rate, error = win_rate(ours, theirs, prompt_index)
            metrics[f"eval/{name}"], metrics[f"eval/{name}_se"] = rate, error
    return metrics
