"""Per-row randomness of the rollout sampler: a prompt's responses do not depend on its batch.

This is what lets N processes, each sampling its shard of a global batch of prompts, draw the
responses one process draws for the whole batch (tests/e2e/test_ddp_parity.py at the CLI level).
"""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_model
from leash.config import TaskConfig
from leash.data.tasks import SyntheticTask
from leash.rollout.generation import _sample_token
from leash.rollout.rollout import Responses, sample
from leash.sequences import left_pad


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TaskConfig(num_prompts=16))


def draw(task: SyntheticTask, policy, ids, mask, seed: int) -> Responses:
    tokenizer = task.tokenizer()
    return sample(
        policy, ids, mask, samples_per_prompt=3, max_new_tokens=task.config.max_response_length,
        temperature=1.0, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        allowed_token_ids=task.allowed_token_ids(), generator=torch.Generator().manual_seed(seed),
    )


def test_two_shards_sampled_apart_draw_what_the_whole_batch_draws(task: SyntheticTask) -> None:
    tokenizer = task.tokenizer()
    policy = tiny_model(len(tokenizer))
    encoded = [tokenizer(p)["input_ids"] for p in task.train_prompts]
    whole = draw(task, policy, *left_pad(encoded, tokenizer.pad_token_id), seed=7)
    for rank in (0, 1):  # the data module's shards: rank r takes prompts r, r + 2, ...
        shard = draw(task, policy, *left_pad(encoded[rank::2], tokenizer.pad_token_id), seed=7)
        rows = torch.arange(len(whole)).view(len(encoded), 3)[rank::2].flatten()
        width = int(shard.response_mask.shape[1])
        assert torch.equal(shard.response_ids, whole.response_ids[rows, :width])
        assert torch.equal(shard.response_mask, whole.response_mask[rows, :width])
        assert not whole.response_mask[rows, width:].any()  # nothing cut from the shard
    # Not a constant: another base seed draws other responses, the same one the same.
    again = draw(task, policy, *left_pad(encoded, tokenizer.pad_token_id), seed=7)
    other = draw(task, policy, *left_pad(encoded, tokenizer.pad_token_id), seed=8)
    assert torch.equal(again.response_ids, whole.response_ids)
    assert not torch.equal(other.response_ids, whole.response_ids)
    # A prompt's three samples are three draws, not one repeated.
    assert len({tuple(r) for r in whole.response_ids.tolist()}) > len(encoded)


def test_one_generator_per_row_samples_the_softmax() -> None:
    # Every row draws from softmax(log [0.1, 0.2, 0.7, 0]): the frequencies over 4000 rows are
    # within 0.03 of those (4 standard errors, sqrt(0.7 * 0.3 / 4000) = 0.0072); the zero
    # probability token is never drawn.
    probs = torch.tensor([0.1, 0.2, 0.7, 0.0])
    logits = probs.log().expand(4000, 4)
    generators = [torch.Generator().manual_seed(row) for row in range(4000)]
    tokens = _sample_token(logits, 1.0, generators)
    frequencies = torch.bincount(tokens, minlength=4).float() / 4000
    assert frequencies.tolist() == pytest.approx([0.1, 0.2, 0.7, 0.0], abs=0.03)
    assert frequencies[3] == 0
