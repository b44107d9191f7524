"""Exact best-of-N: hand-computed on a toy, the known KL bound log N - (N-1)/N, a reward
model's score of every enumerable response, and a scorer's exact ranking accuracy."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from leash.config import TaskConfig
from leash.data.tasks import SyntheticTask
from leash.evaluation.best_of_n import (
    best_of_n,
    best_of_n_point,
    ranking_accuracy,
    response_scores,
)
from leash.evaluation.oracle import ExactDistribution, ExactOracle, exact_gold_reward, exact_kl
from leash.models.heads import score_sequences


def toy(probs, rewards) -> ExactDistribution:
    return ExactDistribution(
        torch.tensor([probs], dtype=torch.float64).log(),
        torch.tensor([rewards], dtype=torch.float64),
    )


def test_best_of_two_by_hand():
    # Rewards 0 < 1 < 2 with reference probabilities 0.5, 0.3, 0.2; CDF 0.5, 0.8, 1.0.
    reference = toy([0.5, 0.3, 0.2], [0.0, 1.0, 2.0])
    bon = best_of_n(reference, 2).probs()[0]
    expected = [0.5**2, 0.8**2 - 0.5**2, 1.0 - 0.8**2]  # 0.25, 0.39, 0.36
    torch.testing.assert_close(bon, torch.tensor(expected, dtype=torch.float64))
    assert exact_gold_reward(best_of_n(reference, 2)) == pytest.approx(0.39 + 2 * 0.36)


def test_ties_share_their_level_like_the_reference():
    # Two responses tie at reward 1 with reference mass 0.3 and 0.1 (level mass 0.4).
    reference = toy([0.6, 0.3, 0.1], [0.0, 1.0, 1.0])
    bon = best_of_n(reference, 3).probs()[0]
    top = 1.0 - 0.6**3  # the level's best-of-3 mass, split 3:1
    torch.testing.assert_close(
        bon, torch.tensor([0.6**3, top * 0.75, top * 0.25], dtype=torch.float64)
    )


def test_best_of_one_is_the_reference_and_kl_matches_the_bound_without_ties():
    probs = torch.full((1, 1000), 1e-3, dtype=torch.float64)
    reference = ExactDistribution(probs.log(), torch.randn(1, 1000, dtype=torch.float64))
    assert exact_kl(best_of_n(reference, 1), reference) == pytest.approx(0.0, abs=1e-12)
    for n in (2, 8, 32):  # for many distinct rewards, KL -> log n - (n - 1) / n
        kl = exact_kl(best_of_n(reference, n), reference)
        assert kl == pytest.approx(math.log(n) - (n - 1) / n, abs=0.01)


def test_best_of_two_under_a_proxy_score_by_hand():
    # Gold rewards 0, 1, 2 with reference probabilities 0.5, 0.3, 0.2, but the proxy scores them
    # 2, 0, 1: it ranks response 1 (p 0.3) < response 2 (p 0.2) < response 0 (p 0.5), CDF 0.3,
    # 0.5, 1.0. Best-of-2 keeps response 1 w.p. 0.3^2 = 0.09, response 2 w.p. 0.5^2 - 0.09 =
    # 0.16 and response 0 w.p. 1 - 0.25 = 0.75.
    reference = toy([0.5, 0.3, 0.2], [0.0, 1.0, 2.0])
    scores = torch.tensor([[2.0, 0.0, 1.0]])
    torch.testing.assert_close(
        best_of_n(reference, 2, scores).probs()[0],
        torch.tensor([0.75, 0.09, 0.16], dtype=torch.float64),
    )
    point = best_of_n_point(reference, 2, scores)
    assert point.n == 2
    assert point.gold_reward == pytest.approx(0 * 0.75 + 1 * 0.09 + 2 * 0.16)  # 0.41
    assert point.score == pytest.approx(2 * 0.75 + 0 * 0.09 + 1 * 0.16)  # 1.66
    # KL = 0.75 ln(0.75/0.5) + 0.09 ln(0.09/0.3) + 0.16 ln(0.16/0.2)
    #    = 0.304099 - 0.108358 - 0.035703 = 0.160038
    assert point.kl == pytest.approx(0.160038, abs=1e-6)


def test_best_of_n_under_the_gold_reward_is_the_default():
    reference = toy([0.5, 0.3, 0.2], [0.0, 1.0, 2.0])
    point = best_of_n_point(reference, 3, reference.rewards)
    assert point.gold_reward == pytest.approx(exact_gold_reward(best_of_n(reference, 3)))
    assert point.score == pytest.approx(point.gold_reward)
    with pytest.raises(ValueError, match="scores must be"):
        best_of_n(reference, 2, torch.zeros(1, 2))


def test_best_of_n_kl_under_distinct_scores_stays_below_the_bound_and_reaches_it():
    # For distinct scores KL <= log N - (N - 1)/N, tight as the largest reference probability
    # goes to 0; uniform over K responses: KL = sum_i q_i log(K q_i), q_i = (i^N - (i-1)^N)/K^N.
    generator = torch.Generator().manual_seed(0)
    for size in (4, 100, 20_000):
        probs = torch.rand(1, size, generator=generator, dtype=torch.float64) + 0.5
        reference = ExactDistribution((probs / probs.sum()).log(), torch.zeros(1, size))
        scores = torch.randn(1, size, generator=generator)
        for n in (2, 8, 32):
            bound = math.log(n) - (n - 1) / n
            kl = best_of_n_point(reference, n, scores).kl
            assert kl <= bound + 1e-12
            if size == 20_000:
                assert kl == pytest.approx(bound, abs=2e-3)
    uniform = ExactDistribution(torch.full((1, 2), 0.5, dtype=torch.float64).log(),
                                torch.zeros(1, 2, dtype=torch.float64))
    # K = 2, N = 2: q = (1/4, 3/4), KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.130812
    kl = best_of_n_point(uniform, 2, torch.tensor([[0.0, 1.0]])).kl
    assert kl == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))


def test_response_scores_are_the_reward_models_scores_of_prompt_then_response():
    task = SyntheticTask.from_config(TaskConfig())
    tokenizer = task.tokenizer()
    oracle = ExactOracle.for_task(task, prompts=task.heldout_prompts[:2], tokenizer=tokenizer)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=16,
        num_labels=1, pad_token_id=tokenizer.pad_token_id)).eval()  # fmt: skip
    scores = response_scores(oracle, model, batch_size=1000)  # batches cut the space
    assert scores.shape == (2, len(oracle.space)) and scores.dtype == torch.float64
    space, words = oracle.space, oracle.word_token_ids.tolist()
    # the empty response (EOS alone), a 3-word one ending in EOS and two 4-word ones cut
    for response, ended in [([], True), ([1, 5, 2], True), ([1, 5, 2, 0], False),
                            ([7, 7, 7, 7], False)]:  # fmt: skip
        row = space.index(response, ended)
        for prompt, text in enumerate(oracle.prompts):
            ids = tokenizer(text)["input_ids"] + [words[w] for w in response]
            ids += [tokenizer.eos_token_id] if ended else []
            direct = score_sequences(model, torch.tensor([ids]), torch.ones(1, len(ids)))
            assert scores[prompt, row] == pytest.approx(float(direct), abs=1e-5)


def test_ranking_accuracy_by_hand():
    # Reference probabilities 0.5, 0.3, 0.2 and gold 0 < 1 < 2 on both prompts. Two independent
    # samples differ with weights 2·0.15 = 0.30 (responses 0, 1), 2·0.10 = 0.20 (0, 2) and
    # 2·0.06 = 0.12 (1, 2).
    # Prompt 1, scores 2, 0, 1: only (1, 2) is ordered as the gold orders it: 0.12 / 0.62.
    # Prompt 2, scores 0, 0, 1: (0, 1) tie (a half), the others agree: 0.47 / 0.62.
    probs = torch.tensor([[0.5, 0.3, 0.2]] * 2, dtype=torch.float64)
    gold = torch.tensor([[0.0, 1.0, 2.0]] * 2, dtype=torch.float64)
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    reference = ExactDistribution(probs.log(), gold)
    expected = (0.12 / 0.62 + 0.47 / 0.62) / 2
    assert ranking_accuracy(reference, scores) == pytest.approx(expected)
    assert ranking_accuracy(reference, scores, rows=1) == pytest.approx(expected)
    assert ranking_accuracy(reference, gold) == pytest.approx(1.0)


def test_ranking_accuracy_leaves_out_pairs_of_equal_gold():
    # Gold 0, 0, 1: the pair (0, 1) says nothing; scores 5, 0, 1 order (0, 2) wrongly (weight
    # 2·0.10) and (1, 2) rightly (2·0.06): 0.12 / 0.32.
    reference = ExactDistribution(torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64).log(),
                                  torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    accuracy = ranking_accuracy(reference, torch.tensor([[5.0, 0.0, 1.0]]))
    assert accuracy == pytest.approx(0.12 / 0.32)
