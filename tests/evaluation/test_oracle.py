"""The exact oracle: enumeration, exact log-probs, KL, the closed-form optimum and the frontier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import tiny_model
from leash.config import TaskConfig
from leash.data.tasks import SyntheticTask
from leash.evaluation.oracle import (
    ExactDistribution,
    ExactOracle,
    ResponseSpace,
    exact_gold_reward,
    exact_kl,
    frontier,
    frontier_gap,
    optimal_point,
    optimal_policy,
)
from leash.losses.logprobs import response_logps
from leash.rollout.generation import task_sampler
from leash.sequences import IGNORE_INDEX, restrict_logits


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TaskConfig())


@pytest.fixture(scope="module")
def oracle(task: SyntheticTask) -> ExactOracle:
    return ExactOracle.for_task(task, prompts=task.heldout_prompts[:6])


@pytest.fixture(scope="module")
def reference(task: SyntheticTask, oracle: ExactOracle) -> ExactDistribution:
    return oracle.distribution(tiny_model(len(task.tokenizer()), seed=0))


@pytest.fixture(scope="module")
def policy(task: SyntheticTask, oracle: ExactOracle) -> ExactDistribution:
    return oracle.distribution(tiny_model(len(task.tokenizer()), seed=1))


def test_response_space_order_and_index() -> None:
    space = ResponseSpace.build(num_words=2, max_length=3)
    assert len(space) == 1 + 2 + 4 + 8
    assert space.words[:4].tolist() == [[-1, -1, -1], [0, -1, -1], [1, -1, -1], [0, 0, -1]]
    assert space.ended.tolist() == [True] * 7 + [False] * 8
    for row, (words, ended) in enumerate(
        zip(space.words.tolist(), space.ended.tolist(), strict=True)
    ):
        assert space.index([w for w in words if w >= 0], ended) == row
    with pytest.raises(ValueError):
        space.index([0, 1, 1], ended=True)  # 3 words + EOS exceed L = 3
    with pytest.raises(ValueError, match="sampling"):
        ResponseSpace.build(num_words=64, max_length=32)


def test_probabilities_sum_to_one(reference: ExactDistribution, oracle: ExactOracle) -> None:
    assert reference.log_probs.shape == (6, 4681)
    assert torch.allclose(reference.probs().sum(-1), torch.ones(6, dtype=torch.float64), atol=1e-4)
    assert oracle.rewards.shape == (6, 4681)


def test_log_probs_match_a_direct_forward(task: SyntheticTask, oracle: ExactOracle) -> None:
    """π(y|x) of a few responses against prompt+response scored by one plain forward pass."""
    tokenizer = task.tokenizer()
    model = tiny_model(len(tokenizer), seed=2)
    exact = oracle.distribution(model)
    words = task.response_words
    for response, ended in [([], True), ([3], True), ([5, 5, 1], True), ([7, 0, 2, 6], False)]:
        prompt_ids = tokenizer(oracle.prompts[1])["input_ids"]
        response_ids = tokenizer(" ".join(words[w] for w in response), add_special_tokens=False)
        response_ids = response_ids["input_ids"] + ([tokenizer.eos_token_id] if ended else [])
        input_ids = torch.tensor([prompt_ids + response_ids])
        labels = torch.tensor([[IGNORE_INDEX] * len(prompt_ids) + response_ids])
        logits = restrict_logits(model(input_ids).logits, task.allowed_token_ids())
        direct, _ = response_logps(logits, labels)
        index = oracle.space.index(response, ended)
        assert exact.log_probs[1, index].item() == pytest.approx(direct.item(), abs=1e-4)


def test_left_padded_prompts_score_like_prompts_alone(task: SyntheticTask) -> None:
    tokenizer = task.tokenizer()
    model = tiny_model(len(tokenizer), seed=4)
    prompts = ["topic0 ctx1 ctx2 ctx3 ctx4", "topic1"]
    rewards = torch.zeros(2, 4681)
    batched = ExactOracle(tokenizer, prompts, task.response_token_ids(), 4, rewards)
    for row, prompt in enumerate(prompts):
        alone = ExactOracle(tokenizer, [prompt], task.response_token_ids(), 4, rewards[:1])
        torch.testing.assert_close(
            batched.distribution(model).log_probs[row],
            alone.distribution(model).log_probs[0],
            atol=1e-5,
            rtol=0,
        )


def test_rewards_table_matches_the_task(task: SyntheticTask, oracle: ExactOracle) -> None:
    space = oracle.space
    for index in [0, 9, 100, 4680]:
        words = [task.response_words[w] for w in space.words[index].tolist() if w >= 0]
        expected = task.gold_reward(oracle.prompts[2], words, bool(space.ended[index]))
        assert oracle.rewards[2, index].item() == pytest.approx(expected, abs=1e-9)


def test_kl_is_zero_to_itself_and_positive_otherwise(
    reference: ExactDistribution, policy: ExactDistribution
) -> None:
    assert exact_kl(reference, reference) == 0.0
    assert (policy.kl(reference) > 0).all()


def test_toy_optimum_by_hand() -> None:
    """π_ref = (1/2, 1/2), r = (1, 0), β = 1: π* = (e, 1)/(e + 1), objective = log((e+1)/2)."""
    reference = ExactDistribution(
        torch.tensor([[math.log(0.5), math.log(0.5)]], dtype=torch.float64),
        torch.tensor([[1.0, 0.0]], dtype=torch.float64),
    )
    optimum = optimal_policy(reference, beta=1.0)
    assert optimum.probs()[0].tolist() == pytest.approx([0.7310586, 0.2689414])
    kl, reward = optimal_point(reference, beta=1.0)
    assert reward == pytest.approx(0.7310586)
    assert reward - kl == pytest.approx(math.log((math.e + 1) / 2))  # 0.6201145


def test_optimum_beats_random_alternatives() -> None:
    """Brute force on 6 responses: E[r] - β·KL of π*_β is the maximum over random policies."""
    rng = np.random.default_rng(0)
    ref_probs = rng.dirichlet(np.ones(6))
    rewards = torch.tensor(rng.uniform(-1, 1, (1, 6)))
    reference = ExactDistribution(torch.tensor(np.log(ref_probs))[None], rewards)
    for beta in [0.05, 0.3, 2.0]:
        kl, reward = optimal_point(reference, beta)
        best = reward - beta * kl
        optimum = optimal_policy(reference, beta).probs()[0].numpy()
        candidates = np.concatenate(
            [
                rng.dirichlet(np.ones(6), size=20000),
                np.abs(optimum + rng.normal(0, 1e-3, size=(2000, 6))),  # near the optimum
            ]
        )
        candidates /= candidates.sum(-1, keepdims=True)
        values = candidates @ rewards[0].numpy() - beta * (
            candidates * np.log(candidates / ref_probs)
        ).sum(-1)
        assert values.max() <= best + 1e-12
        assert best == pytest.approx(
            beta * math.log((ref_probs * np.exp(rewards[0].numpy() / beta)).sum())
        )


def test_closed_form_point_matches_the_generic_kl(reference: ExactDistribution) -> None:
    for beta in [0.01, 0.1, 1.0]:
        optimum = optimal_policy(reference, beta)
        kl, reward = optimal_point(reference, beta)
        assert kl == pytest.approx(exact_kl(optimum, reference), rel=1e-9, abs=1e-12)
        assert reward == pytest.approx(exact_gold_reward(optimum), rel=1e-12)


def test_frontier_is_monotone_and_starts_at_the_reference(
    reference: ExactDistribution, oracle: ExactOracle
) -> None:
    curve = frontier(reference)
    assert curve.betas[0] == np.inf and curve.kl[0] == 0.0
    assert (np.diff(curve.kl) >= -1e-12).all()
    assert (np.diff(curve.reward) >= -1e-12).all()
    assert curve.reward[-1] - curve.reward[0] > 1.0  # a real trade-off, not a flat line
    # beta -> 0: the per-prompt best response; beta -> inf: the reference
    assert curve.reward[-1] == pytest.approx(oracle.rewards.max(-1).values.mean().item(), abs=1e-3)
    kl, reward = optimal_point(reference, 1e6)
    assert kl < 1e-6
    assert reward == pytest.approx(exact_gold_reward(reference), abs=1e-5)


def test_frontier_gap(reference: ExactDistribution, policy: ExactDistribution) -> None:
    curve = frontier(reference)
    for beta in [curve.betas[100], 0.123]:  # on the grid, and between grid points
        kl, reward = optimal_point(reference, float(beta))
        assert frontier_gap(kl, reward, curve) == pytest.approx(0.0, abs=1e-3)
    assert frontier_gap(0.0, exact_gold_reward(reference), curve) == pytest.approx(0.0, abs=1e-12)
    # a random policy is strictly below the frontier at its own KL
    assert frontier_gap(exact_kl(policy, reference), exact_gold_reward(policy), curve) > 0.05


def test_monte_carlo_kl_agrees_with_exact_kl(task: SyntheticTask, oracle: ExactOracle) -> None:
    """Mean of log π - log π_ref over samples of π lies within 4 standard errors of the exact KL."""
    tokenizer = task.tokenizer()
    policy_model = tiny_model(len(tokenizer), seed=1)
    reference = oracle.distribution(tiny_model(len(tokenizer), seed=0))
    policy = oracle.distribution(policy_model)
    draws = 1500
    samples = task_sampler(task, policy_model, tokenizer, torch.Generator().manual_seed(0))(
        oracle.prompts, draws
    )
    word_of = {token: index for index, token in enumerate(task.response_token_ids())}
    ratios = np.zeros((len(oracle.prompts), draws))
    for row, (prompt, ids, ended) in enumerate(
        zip(samples.prompt_index, samples.response_ids, samples.ended, strict=True)
    ):
        index = oracle.space.index([word_of[t] for t in (ids[:-1] if ended else ids)], ended)
        ratios[prompt, row % draws] = (
            policy.log_probs[prompt, index] - reference.log_probs[prompt, index]
        ).item()
    estimate = ratios.mean()
    standard_error = math.sqrt((ratios.var(-1) / draws).sum()) / len(oracle.prompts)
    assert abs(estimate - exact_kl(policy, reference)) < 4 * standard_error
