"""The common evaluator: sample-based KL agrees with the exact KL; exact metrics are consistent."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from leash.config import EvalConfig, TaskConfig
from leash.data.tasks import SyntheticTask
from leash.evaluation.evaluator import EvalContext, PolicyEvaluator
from leash.models.reference import FrozenCopy


def tiny_lm(vocab_size: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=16)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # larger logits than the default init, so policy and reference differ
        model.lm_head.weight.mul_(20.0)
    return model


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TaskConfig(num_prompts=16, eval_fraction=0.25))


def test_sample_kl_matches_exact_kl_within_monte_carlo_error(task):
    tokenizer = task.tokenizer()
    policy, reference = tiny_lm(len(tokenizer), 0), tiny_lm(len(tokenizer), 1)
    context = EvalContext(
        tokenizer, task.heldout_prompts, task=task, reference=FrozenCopy(reference)
    )
    # Every sample is kept (table_rows) for the Monte-Carlo standard errors below.
    settings = EvalConfig(num_samples=1024, seed=7, batch_size=4096, table_rows=10**6)
    result = PolicyEvaluator(context, settings).evaluate(policy)
    metrics = result.metrics
    log_ratios = torch.tensor([row.log_ratio for row in result.samples], dtype=torch.float64)
    standard_error = float(log_ratios.std() / math.sqrt(len(log_ratios)))
    assert metrics["eval/exact_kl"] > 0.05  # the two networks really differ
    assert abs(metrics["eval/kl"] - metrics["eval/exact_kl"]) < 4 * standard_error
    # The same holds for the gold reward: the sample mean estimates the exact expectation.
    rewards = torch.tensor([row.gold_reward for row in result.samples], dtype=torch.float64)
    reward_error = float(rewards.std() / math.sqrt(len(rewards)))
    assert abs(metrics["eval/gold_reward"] - metrics["eval/exact_gold_reward"]) < 4 * reward_error
    # k3 is non-negative per sample, hence in the mean.
    assert metrics["eval/kl_k3"] >= 0
    # A policy strictly off the frontier has a positive gap; the gap is finite.
    assert metrics["eval/frontier_gap"] > 0


def test_a_policy_that_is_its_own_reference_sits_at_the_frontier_origin(task):
    tokenizer = task.tokenizer()
    policy = tiny_lm(len(tokenizer), 0)
    context = EvalContext(tokenizer, task.heldout_prompts, task=task)
    metrics = PolicyEvaluator(context, EvalConfig(num_samples=4)).evaluate(policy).metrics
    assert metrics["eval/kl"] == 0.0
    assert metrics["eval/exact_kl"] == 0.0
    assert metrics["eval/frontier_gap"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["eval/exact_gold_reward"] == pytest.approx(
        metrics["eval/reference_exact_gold_reward"]
    )
    # The optimum at beta = 0.1 moves away from the reference and earns more reward.
    assert metrics["eval/optimum_beta0.1_kl"] > 0
    assert metrics["eval/optimum_beta0.1_gold_reward"] > metrics["eval/exact_gold_reward"]


def test_evaluation_is_reproducible_and_leaves_training_mode(task):
    tokenizer = task.tokenizer()
    policy = tiny_lm(len(tokenizer), 0).train()
    evaluator = PolicyEvaluator(EvalContext(tokenizer, task.heldout_prompts, task=task),
                                EvalConfig(num_samples=4))
    first, second = evaluator.evaluate(policy), evaluator.evaluate(policy)
    assert first.metrics == second.metrics
    assert [r.response for r in first.samples] == [r.response for r in second.samples]
    assert policy.training


def test_a_judge_with_its_own_tokenizer_scores_the_decoded_samples(tmp_path):
    """Real data: a byte-level policy, a ChatML judge. Every sample's judge score is the judge
    model's own output on the decoded response re-rendered in its chat format."""
    from helpers import JUDGE_PROMPTS, direct_score, save_judge
    from leash.models.judge import Judge, conversation
    from leash.models.tokenizers import build_byte_tokenizer
    from tokenizer_zoo import chatml_like

    tokenizer = build_byte_tokenizer()
    folder = save_judge(chatml_like(), tmp_path / "judge")
    judge = Judge.load(str(folder))
    context = EvalContext(tokenizer, JUDGE_PROMPTS, judge=judge)
    settings = EvalConfig(num_samples=3, max_new_tokens=6, table_rows=100)
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1,
                                        n_head=2, n_positions=256))
    result = PolicyEvaluator(context, settings).evaluate(policy)
    assert len(result.samples) == 9
    direct = []
    for row in result.samples:
        response = row.response.removesuffix(" [cut]")
        text = judge.tokenizer.apply_chat_template(conversation(row.prompt, response),
                                                   tokenize=False)
        direct.append(direct_score(folder, text, add_special_tokens=False))
        assert row.judge_score == pytest.approx(direct[-1], abs=1e-5)
    assert result.metrics["eval/judge_score"] == pytest.approx(sum(direct) / 9, abs=1e-6)
    # The policy is its own reference here: its samples tie with themselves.
    assert result.metrics["eval/win_rate"] == 0.5
    assert result.metrics["eval/reference_judge_score"] == result.metrics["eval/judge_score"]
    assert "eval/rm_score" not in result.metrics and "eval/gold_reward" not in result.metrics


def test_win_rate_and_reference_scores_against_a_different_reference(task):
    tokenizer = task.tokenizer()
    policy, reference = tiny_lm(len(tokenizer), 0), tiny_lm(len(tokenizer), 1)
    context = EvalContext(tokenizer, task.heldout_prompts, task=task,
                          reference=FrozenCopy(reference))
    metrics = PolicyEvaluator(context, EvalConfig(num_samples=64)).evaluate(policy).metrics
    alone = PolicyEvaluator(EvalContext(tokenizer, task.heldout_prompts, task=task),
                            EvalConfig(num_samples=64)).evaluate(reference).metrics
    # The reference's samples are exactly those it gets when evaluated alone (same stream).
    assert metrics["eval/reference_gold_reward"] == alone["eval/gold_reward"]
    assert metrics["eval/reference_response_length"] == alone["eval/response_length"]
    assert alone["eval/gold_win_rate"] == 0.5
    # The gold win rate is a fraction with a positive standard error over prompts; it leans the
    # way the mean gold rewards differ.
    rate, error = metrics["eval/gold_win_rate"], metrics["eval/gold_win_rate_se"]
    assert 0 < rate < 1 and error > 0
    better = metrics["eval/gold_reward"] > metrics["eval/reference_gold_reward"]
    assert (rate > 0.5) == better
