"""The shared sampler: padding, masking, reproducibility, and the exact sampling distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import tiny_model
from leash.config import TaskConfig
from leash.data.tasks import SyntheticTask
from leash.evaluation.oracle import ExactOracle
from leash.models.logprobs import tempered_logps
from leash.rollout.generation import (
    evaluating,
    generate,
    left_pad,
    positions_from_mask,
    restrict_logits,
    sample_responses,
    task_sampler,
)

TINY_TASK = TaskConfig(
    num_topics=2,
    num_prompt_words=3,
    prompt_length=2,
    num_prompts=6,
    response_vocab_size=2,
    max_response_length=3,
    target_length=2,
)


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TINY_TASK)


def test_left_pad_and_positions() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions_from_mask(mask).tolist() == [[0, 1, 2], [0, 0, 0]]


def test_restrict_logits_keeps_only_allowed_tokens() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    probs = torch.softmax(restrict_logits(logits, torch.tensor([0, 2])), -1)
    # softmax over {1, 3} only: e^1 / (e^1 + e^3) = 0.1192
    assert probs[0].tolist() == pytest.approx([0.11920292, 0.0, 0.88079708, 0.0])
    assert restrict_logits(logits, None) is logits


def test_generate_pads_after_eos_and_masks(task: SyntheticTask) -> None:
    tokenizer = task.tokenizer()
    model = tiny_model(len(tokenizer))
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in task.prompts] * 20, 0)
    generator = torch.Generator().manual_seed(0)
    allowed = task.allowed_token_ids()
    response, response_mask, _ = generate(
        model, ids, mask, 3, 2, 0, generator=generator, allowed_token_ids=allowed
    )
    assert response.shape == response_mask.shape == (len(ids), 3)
    eos = response == tokenizer.eos_token_id
    after_eos = (eos.long().cumsum(-1) - eos.long()) > 0
    assert (response[after_eos] == tokenizer.pad_token_id).all()
    assert (response_mask == (~after_eos).long()).all()
    assert torch.isin(response[~after_eos], allowed).all()
    assert eos.any() and (~eos.any(-1)).any()  # some rows end, some are cut


def test_the_sampler_says_the_log_probs_a_trainer_forward_gives(task: SyntheticTask) -> None:
    # What rollout/logprob_gap measures: ~0 for the sampler itself, the gap of a stale copy.
    tokenizer = task.tokenizer()
    model = tiny_model(len(tokenizer))
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in task.prompts] * 4, 0)
    allowed = task.allowed_token_ids()
    out = generate(model, ids, mask, 3, 2, 0, temperature=0.7,
                   generator=torch.Generator().manual_seed(1), allowed_token_ids=allowed)
    trainer = tempered_logps(model, ids, mask, out.response_ids, out.response_mask, allowed,
                             0.7).logps
    real = out.response_mask > 0
    assert (out.logprobs[~real] == 0).all() and (out.logprobs[real] < 0).all()
    assert torch.allclose(out.logprobs, trainer * out.response_mask, atol=1e-5)
    stale = tiny_model(len(tokenizer), seed=1)  # other weights: the gap is far from 0
    drifted = tempered_logps(stale, ids, mask, out.response_ids, out.response_mask, allowed,
                             0.7).logps
    assert ((drifted - out.logprobs).abs()[real]).mean() > 1e-3


def test_generate_stops_once_every_row_ended(task: SyntheticTask) -> None:
    tokenizer = task.tokenizer()
    ids, mask = left_pad([tokenizer(p)["input_ids"] for p in task.prompts], 0)
    only_eos = torch.tensor([tokenizer.eos_token_id])
    response, response_mask, _ = generate(
        tiny_model(len(tokenizer)), ids, mask, 5, 2, 0, allowed_token_ids=only_eos
    )
    assert response.tolist() == [[2]] * len(ids)
    assert response_mask.tolist() == [[1]] * len(ids)


def test_sampling_is_reproducible_under_a_seed(task: SyntheticTask) -> None:
    tokenizer = task.tokenizer()
    model = tiny_model(len(tokenizer))

    def draw(seed: int) -> list[list[int]]:
        sample_fn = task_sampler(task, model, tokenizer, torch.Generator().manual_seed(seed))
        return sample_fn(task.prompts, 8).response_ids

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_samples_fields_are_consistent(task: SyntheticTask) -> None:
    tokenizer = task.tokenizer()
    samples = sample_responses(
        tiny_model(len(tokenizer)),
        tokenizer,
        [tokenizer(prompt)["input_ids"] for prompt in task.prompts[:2]],
        50,
        3,
        generator=torch.Generator().manual_seed(0),
        allowed_token_ids=task.allowed_token_ids(),
        batch_size=32,
    )
    assert samples.prompt_index == [0] * 50 + [1] * 50
    for ids, ended, text in zip(samples.response_ids, samples.ended, samples.text, strict=True):
        assert tokenizer.pad_token_id not in ids and 1 <= len(ids) <= 3
        assert ended == (ids[-1] == tokenizer.eos_token_id)
        words = ids[:-1] if ended else ids
        assert text.split() == tokenizer.convert_ids_to_tokens(words)


def test_generation_restores_training_mode(task: SyntheticTask) -> None:
    model = tiny_model(len(task.tokenizer())).train()
    with evaluating(model):
        assert not model.training
    assert model.training


def test_empirical_distribution_matches_the_exact_policy(task: SyntheticTask) -> None:
    """Chi-square of sampled responses against the oracle's π(y|x), left padding included."""
    tokenizer = task.tokenizer()
    model = tiny_model(len(tokenizer), seed=3).train()  # dropout must be off while sampling
    prompts = ["topic0 ctx1", "topic1 ctx2 ctx0 ctx0"]  # different lengths: left padding
    oracle = ExactOracle(tokenizer, prompts, task.response_token_ids(), 3, torch.zeros(2, 15))
    exact = oracle.distribution(model).probs().numpy()
    draws = 4000
    samples = task_sampler(task, model, tokenizer, torch.Generator().manual_seed(0))(prompts, draws)
    counts = np.zeros_like(exact)
    word_of = {token: index for index, token in enumerate(task.response_token_ids())}
    for prompt, ids, ended in zip(
        samples.prompt_index, samples.response_ids, samples.ended, strict=True
    ):
        words = [word_of[token] for token in (ids[:-1] if ended else ids)]
        counts[prompt, oracle.space.index(words, ended)] += 1
    for observed, probs in zip(counts, exact, strict=True):
        expected = draws * probs
        assert abs(observed.sum() - expected.sum()) < 1e-3
        big = expected >= 5  # lump rare responses into one bin
        stat = ((observed[big] - expected[big]) ** 2 / expected[big]).sum()
        rest_obs, rest_exp = observed[~big].sum(), expected[~big].sum()
        stat += (rest_obs - rest_exp) ** 2 / rest_exp if rest_exp > 0 else rest_obs
        # chi-square quantile 0.999 with at most 15 degrees of freedom is 37.7
        assert stat < 37.7
        assert 0.5 * np.abs(observed / draws - probs).sum() < 0.04
