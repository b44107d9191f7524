"""The synthetic task: determinism, the gold reward, the SFT corpus and the preference labels."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from leash.config import TaskConfig
from leash.data.tasks import REWARD_BOUNDS, GoldReward, SyntheticTask
from leash.data.tasks.pairs import bradley_terry_wins
from leash.data.types import Samples
from leash.evaluation.oracle import ResponseSpace
from leash.rollout.generation import task_sampler

SMALL = TaskConfig(num_prompts=8, pairs_per_prompt=4)


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TaskConfig())


def hand_task() -> SyntheticTask:
    """2 topics, 2 context words, 2 response words; K* = 2, L = 3; valences set by hand."""
    cfg = TaskConfig(
        num_topics=2,
        num_prompt_words=2,
        prompt_length=2,
        num_prompts=4,
        response_vocab_size=2,
        max_response_length=3,
        target_length=2,
    )
    reward = GoldReward(
        topic_valence=torch.tensor([[0.5, -0.25], [-1.0, 1.0]], dtype=torch.float64),
        context_valence=torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64),
        target_length=2,
        max_length=3,
    )
    return dataclasses.replace(SyntheticTask.from_config(cfg), reward=reward)


def fixed_sampler(responses: list[str], seed: int = 0):
    """A sample_fn drawing uniformly from a fixed list of (ended) responses, seeded."""
    rng = np.random.default_rng(seed)

    def sample_fn(prompts: list[str], num_samples: int) -> Samples:
        rows = [index for index in range(len(prompts)) for _ in range(num_samples)]
        text = [responses[i] for i in rng.integers(len(responses), size=len(rows))]
        return Samples(rows, [[] for _ in rows], [True] * len(rows), text)

    return sample_fn


# ------------------------------------------------------------------------------- determinism
def test_same_seed_same_task_other_seed_other_task(task: SyntheticTask) -> None:
    again = SyntheticTask.from_config(TaskConfig())
    other = SyntheticTask.from_config(TaskConfig(seed=1))
    assert again.prompts == task.prompts and again.heldout_prompts == task.heldout_prompts
    assert torch.equal(again.reward.topic_valence, task.reward.topic_valence)
    assert again.sft_corpus().to_dict() == task.sft_corpus().to_dict()
    assert other.prompts != task.prompts
    assert not torch.equal(other.reward.topic_valence, task.reward.topic_valence)
    assert other.sft_corpus()["response"] != task.sft_corpus()["response"]


def test_prompts_and_split(task: SyntheticTask) -> None:
    assert len(set(task.prompts)) == 64
    assert all(
        p.split()[0] == f"topic{i % 4}" and len(p.split()) == 3 for i, p in enumerate(task.prompts)
    )
    assert len(task.heldout_prompts) == 16 and len(task.train_prompts) == 48
    assert set(task.train_prompts) | set(task.heldout_prompts) == set(task.prompts)
    assert not set(task.train_prompts) & set(task.heldout_prompts)
    with pytest.raises(ValueError, match="num_prompts"):
        SyntheticTask.from_config(TaskConfig(num_prompts=200))  # 4 topics x 6^2 contexts = 144


def test_tokenizer_is_one_word_one_token(task: SyntheticTask) -> None:
    tokenizer = task.tokenizer()
    assert len(tokenizer) == 4 + 4 + 6 + 8
    assert tokenizer("topic2 ctx4 ctx1")["input_ids"] == [1, 6, 12, 9]  # BOS first
    allowed = tokenizer.convert_ids_to_tokens(task.allowed_token_ids().tolist())
    assert allowed == task.response_words + [tokenizer.eos_token]


# ------------------------------------------------------------------------------- gold reward
def test_gold_reward_by_hand() -> None:
    """v(w0) = 0.8·0.5 + 0.2·1 = 0.6 and v(w1) = 0.8·(-0.25) = -0.2 under "topic0 ctx0"."""
    hand = hand_task()
    # content (0.6 - 0.2)/2 = 0.2, length 0.5 - 0/2, stop 0.5, no repeat
    assert hand.gold_reward("topic0 ctx0", ["w0", "w1"], True) == pytest.approx(1.2)
    # content 0.6, length 0.5 - |3-2|/2 = 0, cut, repeat 2/2 = 1
    assert hand.gold_reward("topic0 ctx0", ["w0", "w0", "w0"], False) == pytest.approx(-0.4)
    # empty: content 0, length 0.5 - min(1, 2/2) = -0.5, stop 0.5
    assert hand.gold_reward("topic0 ctx0", [], True) == pytest.approx(0.0)
    # a non-response token has valence -1: content (0.6 - 1)/2 = -0.2
    assert hand.gold_reward("topic0 ctx0", ["w0", "topic1"], True) == pytest.approx(0.8)
    # no context word: the topic valence alone, content 0.5, length 0.5 - 1/2 = 0
    assert hand.gold_reward("topic0", ["w0"], True) == pytest.approx(1.0)
    # context ctx1 (valence 0) still counts in the mean: v(w1) = 0.8·1 + 0.2·0 = 0.8
    assert hand.gold_reward("topic1 ctx1", ["w1"], False) == pytest.approx(0.8 + 0.0 + 0.0)


def test_gold_reward_on_token_ids_matches_words() -> None:
    hand = hand_task()
    tokenizer = hand.tokenizer()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    w0, w1 = hand.response_token_ids()
    topic0, topic1, ctx0 = tokenizer.convert_tokens_to_ids(["topic0", "topic1", "ctx0"])
    prompt_ids = torch.tensor(
        [[1, topic0, ctx0], [1, topic0, ctx0], [pad, 1, topic0], [1, topic0, ctx0]]
    )
    response_ids = torch.tensor([[w0, w1, eos], [w0, w0, w0], [w0, eos, pad], [eos, pad, pad]])
    rewards = hand.gold_reward_ids(prompt_ids, response_ids)
    assert rewards.dtype == torch.float32
    assert rewards.tolist() == pytest.approx([1.2, -0.4, 1.0, 0.0])
    with pytest.raises(ValueError, match="topic"):
        hand.gold_reward_ids(torch.tensor([[1, ctx0, ctx0]]), response_ids[:1])
    with pytest.raises(ValueError, match="topic"):
        hand.gold_reward_ids(torch.tensor([[topic0, topic1]]), response_ids[:1])


def test_reward_bounds(task: SyntheticTask) -> None:
    rng = np.random.default_rng(0)
    vocabulary = task.response_words + ["topic0", "ctx3", "nonsense"]
    responses = [list(rng.choice(vocabulary, size=rng.integers(0, 9))) for _ in range(2000)]
    prompts = [task.prompts[i] for i in rng.integers(64, size=2000)]
    rewards = task.gold_rewards(prompts, responses, rng.random(2000) < 0.5)
    assert REWARD_BOUNDS[0] <= rewards.min() and rewards.max() <= REWARD_BOUNDS[1]
    # valence -1, farthest length, cut, all repeats: the lower bound is reached
    assert task.gold_reward(task.prompts[0], ["topic0"] * 9, False) == -2.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimum_depends_on_the_prompt_and_is_not_one_token_repeated(seed: int) -> None:
    task = SyntheticTask.from_config(TaskConfig(seed=seed))
    space = ResponseSpace.build(8, 4)
    rewards = task.reward.score_all(task.prompt_valence(task.prompts), space.words, space.ended)
    best = rewards.argmax(-1)
    best_per_topic = {
        prompt.split()[0]: space.words[b].tolist()
        for prompt, b in zip(task.prompts, best, strict=True)
    }
    assert len({tuple(words) for words in best_per_topic.values()}) > 1
    for words in space.words[best].tolist():
        assert all(a != b for a, b in zip(words, words[1:], strict=False) if b >= 0)
    repeated = [space.index([w] * k, ended=True) for w in range(8) for k in (2, 3)]
    repeated += [space.index([w] * 4, ended=False) for w in range(8)]
    assert (rewards[:, repeated].max(-1).values < rewards.max(-1).values - 0.05).all()


# ------------------------------------------------------------------------------------ corpus
def test_sft_corpus(task: SyntheticTask) -> None:
    corpus = task.sft_corpus()
    assert corpus.num_rows == 2048 and corpus.column_names == ["prompt", "response", "ended"]
    assert set(corpus["prompt"]) == set(task.train_prompts)
    lengths = np.array([len(r.split()) for r in corpus["response"]])
    ended = np.array(corpus["ended"])
    assert lengths.min() == 1 and lengths.max() == 4
    assert (ended == (lengths < 4)).all()
    assert set(" ".join(corpus["response"]).split()) <= set(task.response_words)
    # the behaviour policy is far from the reward's optimum
    rewards = task.gold_rewards(corpus["prompt"], [r.split() for r in corpus["response"]], ended)
    space = ResponseSpace.build(8, 4)
    valence = task.prompt_valence(task.train_prompts)
    optimum = task.reward.score_all(valence, space.words, space.ended).max(-1).values.mean()
    assert rewards.mean() < optimum.item() - 1.0


# ------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_bradley_terry_frequencies(temperature: float) -> None:
    rng = np.random.default_rng(0)
    draws = 20000
    for delta in [-1.0, 0.0, 0.3, 1.5]:
        wins = bradley_terry_wins(np.full(draws, delta), np.zeros(draws), temperature, rng)
        expected = 1 / (1 + math.exp(-delta / temperature))
        assert abs(wins.mean() - expected) < 4 * math.sqrt(expected * (1 - expected) / draws)


def test_bradley_terry_temperature_zero_is_deterministic() -> None:
    wins = bradley_terry_wins(
        np.array([1.0, 0.0, 0.5]), np.array([0.0, 1.0, 0.5]), 0.0, np.random.default_rng(0)
    )
    assert wins.tolist() == [True, False, False]


def test_preference_pairs_label_frequencies() -> None:
    """With two responses a and b, a is chosen at rate σ(r_a - r_b) (T = 1), prompt by prompt."""
    task = SyntheticTask.from_config(dataclasses.replace(SMALL, pairs_per_prompt=400))
    pairs = task.preference_pairs(fixed_sampler(["w0 w1 w2", "w3 w3"]))
    train = pairs["train"].to_pandas()
    assert len(train) == 6 * 400 and len(pairs["test"]) == 2 * 400
    observed, expected, variance = 0, 0.0, 0.0
    for prompt in task.train_prompts:
        rows = train[train.prompt == prompt]
        r_a = task.gold_reward(prompt, ["w0", "w1", "w2"], True)
        r_b = task.gold_reward(prompt, ["w3", "w3"], True)
        prob = 1 / (1 + math.exp(-(r_a - r_b)))
        chosen_a = int((rows.chosen == "w0 w1 w2").sum())
        assert abs(chosen_a - 400 * prob) < 5 * math.sqrt(400 * prob * (1 - prob))
        observed, expected = observed + chosen_a, expected + 400 * prob
        variance += 400 * prob * (1 - prob)
    assert abs(observed - expected) < 4 * math.sqrt(variance)


def test_preference_pairs_temperature_zero() -> None:
    task = SyntheticTask.from_config(dataclasses.replace(SMALL, label_temperature=0.0))
    # "w1 w2" and "w2 w1" tie in reward: such pairs must never appear
    pairs = task.preference_pairs(fixed_sampler(["w1 w2", "w2 w1", "w5", "w0 w0 w4"]))
    for split, prompts in [("train", task.train_prompts), ("test", task.heldout_prompts)]:
        rows = pairs[split]
        assert rows["prompt"] == [p for p in prompts for _ in range(4)]
        assert all(
            c > r
            for c, r in zip(rows["chosen_gold_reward"], rows["rejected_gold_reward"], strict=True)
        )
        assert all(c != r for c, r in zip(rows["chosen"], rows["rejected"], strict=True))
        for row in rows:
            reward = task.gold_reward(row["prompt"], row["chosen"].split(), row["chosen_ended"])
            assert row["chosen_gold_reward"] == pytest.approx(reward)


def test_preference_pairs_warn_when_responses_never_differ() -> None:
    task = SyntheticTask.from_config(SMALL)
    with pytest.warns(UserWarning, match="missing"):
        pairs = task.preference_pairs(fixed_sampler(["w1 w2"]))
    assert pairs["train"].num_rows == 0


def test_preference_pairs_from_a_tiny_policy_are_seeded() -> None:
    task = SyntheticTask.from_config(SMALL)
    tokenizer = task.tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=16)
    )

    def build() -> dict:
        sample_fn = task_sampler(task, model, tokenizer, torch.Generator().manual_seed(0))
        return task.preference_pairs(sample_fn)["train"].to_dict()

    first = build()
    assert first == build()
    assert len(first["prompt"]) == 6 * 4
    assert set(first["chosen_ended"]) | set(first["rejected_ended"]) <= {True, False}
