"""The common evaluator: every algorithm's policy measured the same way on the same prompts.

It samples responses to held-out prompts with fixed settings and a fixed seed, then reports
what the policy buys (gold reward, learned-RM score) and how far it moved (sequence-level KL to
the reference on the samples, k1 and k3). On the enumerable task it also reports the exact KL,
the exact expected gold reward and the gap to the exact optimal reward-KL frontier.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from leash.config import EvalConfig
from leash.data.tasks import SyntheticTask
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
from leash.models.heads import score_sequences
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
    """Held-out prompts (text)."""
    task: SyntheticTask | None = None
    """The built-in task: gold reward, allowed tokens, and (if enumerable) the exact oracle."""
    reference: Reference | None = None
    """The reference policy; None when the evaluated policy is its own reference (SFT)."""
    reward_model: torch.nn.Module | None = None
    """A learned reward model to score samples with (``eval/rm_score``)."""


@dataclass(frozen=True)
class SampleRow:
    """One sampled response, for the samples table."""

    prompt: str
    response: str
    gold_reward: float | None
    rm_score: float | None
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
        prompts = context.prompts[: settings.max_prompts]
        self.prompts = prompts
        task = context.task
        self.allowed_token_ids = task.allowed_token_ids() if task is not None else None
        self.max_new_tokens = (
            task.config.max_response_length if task is not None else settings.max_new_tokens
        )
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
        tokenizer, settings = self.context.tokenizer, self.settings
        device = next(policy.parameters()).device
        generator = torch.Generator(device=device).manual_seed(settings.seed)
        with evaluating(policy):
            samples = sample_responses(
                policy,
                tokenizer,
                self.prompts,
                settings.num_samples,
                self.max_new_tokens,
                temperature=settings.temperature,
                generator=generator,
                allowed_token_ids=self.allowed_token_ids,
                batch_size=settings.batch_size,
            )
            prompt_ids = [tokenizer(self.prompts[i])["input_ids"] for i in samples.prompt_index]
            policy_logps = self._sequence_logps(policy, prompt_ids, samples.response_ids)
        reference_logps = self._reference_logps(policy, prompt_ids, samples.response_ids)
        log_ratio = policy_logps - reference_logps
        metrics = {
            "eval/kl": float(log_ratio.mean()),
            "eval/kl_k3": float((torch.expm1(-log_ratio) + log_ratio).mean()),
            "eval/response_length": sum(map(len, samples.response_ids)) / len(samples),
            "eval/eos_fraction": sum(samples.ended) / len(samples),
        }
        gold = self._gold_rewards(prompt_ids, samples.response_ids)
        if gold is not None:
            metrics["eval/gold_reward"] = float(gold.mean())
        scores = self._rm_scores(prompt_ids, samples.response_ids)
        if scores is not None:
            metrics["eval/rm_score"] = float(scores.mean())
        curve = None
        if self.oracle is not None:
            exact, curve = self._exact_metrics(policy)
            metrics.update(exact)
        rows = [
            SampleRow(
                prompt=self.prompts[samples.prompt_index[i]],
                response=samples.text[i] + ("" if samples.ended[i] else " [cut]"),
                gold_reward=None if gold is None else float(gold[i]),
                rm_score=None if scores is None else float(scores[i]),
                log_ratio=float(log_ratio[i]),
            )
            for i in range(min(len(samples), settings.table_rows))
        ]
        return Evaluation(metrics, rows, curve)

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

    def _gold_rewards(self, prompts, responses) -> torch.Tensor | None:
        task = self.context.task
        if task is None:
            return None
        pad = self.context.tokenizer.pad_token_id
        prompt_ids, _ = left_pad(prompts, pad)
        response_ids, _ = right_pad(responses, pad)
        return task.gold_reward_ids(prompt_ids, response_ids).double()

    def _rm_scores(self, prompts, responses) -> torch.Tensor | None:
        model = self.context.reward_model
        if model is None:
            return None
        pad = self.context.tokenizer.pad_token_id
        device = next(model.parameters()).device
        sequences = [p + r for p, r in zip(prompts, responses, strict=True)]
        scores = []
        with evaluating(model):
            for start in range(0, len(sequences), self.settings.batch_size):
                ids, mask = right_pad(sequences[start : start + self.settings.batch_size], pad)
                scores.append(score_sequences(model, ids.to(device), mask.to(device)).cpu())
        return torch.cat(scores).double()

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
