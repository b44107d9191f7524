"""`data.task.pair_coverage`: preference pairs restricted to a seeded random subset of responses."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from leash.config import TaskConfig
from leash.config.validation import check_ranges
from leash.data.tasks import SyntheticTask
from leash.data.tasks.pairs import in_subset, label_pairs
from leash.data.types import Samples
from leash.evaluation.oracle import ResponseSpace

SMALL = TaskConfig(num_prompts=8, pairs_per_prompt=4)


def space_texts(task: SyntheticTask) -> list[tuple[str, bool]]:
    """Every response of the task's space as (text, ended)."""
    space = ResponseSpace.build(task.config.response_vocab_size, task.config.max_response_length)
    return [
        (" ".join(task.response_words[w] for w in row if w >= 0), bool(ended))
        for row, ended in zip(space.words.tolist(), space.ended.tolist(), strict=True)
    ]


def fixed_sampler(responses: list[str], seed: int = 0):
    """A sample_fn drawing uniformly from a fixed list of (ended) responses, seeded."""
    rng = np.random.default_rng(seed)

    def sample_fn(prompts: list[str], num_samples: int) -> Samples:
        rows = [index for index in range(len(prompts)) for _ in range(num_samples)]
        text = [responses[i] for i in rng.integers(len(responses), size=len(rows))]
        return Samples(rows, [[] for _ in rows], [True] * len(rows), text)

    return sample_fn


def test_the_subset_is_the_hash_below_the_fraction_worked_out_by_hand():
    # u = the first 8 bytes of sha256("0\n1\nw1 w2"), big-endian, over 2**64.
    u = int.from_bytes(hashlib.sha256(b"0\n1\nw1 w2").digest()[:8], "big") / 2**64
    assert in_subset("w1 w2", True, math.nextafter(u, 1), 0)
    assert not in_subset("w1 w2", True, u, 0)
    assert in_subset("w1 w2", True, 1.0, 0)


def test_the_subset_holds_its_share_of_the_space_nested_and_seeded():
    task = SyntheticTask.from_config(TaskConfig())
    responses = space_texts(task)  # 4,681 responses
    inside = {f: {r for r in responses if in_subset(*r, f, 0)} for f in (0.25, 0.5, 1.0)}
    assert len(inside[1.0]) == len(responses)
    for fraction in (0.25, 0.5):  # binomial: within 4 sd of the expected count
        sd = math.sqrt(len(responses) * fraction * (1 - fraction))
        assert abs(len(inside[fraction]) - fraction * len(responses)) < 4 * sd
    assert inside[0.25] <= inside[0.5] <= inside[1.0]
    other = {r for r in responses if in_subset(*r, 0.5, 1)}
    assert other != inside[0.5] and len(other & inside[0.5]) < 0.75 * len(other)
    # an ended and a cut response with the same words are two responses, drawn apart
    texts = {text for text, _ in responses}
    assert {t for t in texts if in_subset(t, True, 0.5, 0)} != {
        t for t in texts if in_subset(t, False, 0.5, 0)}  # fmt: skip


def test_restricted_pairs_hold_only_kept_responses_and_keep_none_changes_nothing():
    task = SyntheticTask.from_config(dataclasses.replace(SMALL, pair_coverage=0.5))
    pool = [f"w{a} w{b}" for a in range(4) for b in range(4)]
    kept = [text for text in pool if task.in_pair_support(text, True)]
    assert 2 <= len(kept) < len(pool)
    pairs = task.preference_pairs(fixed_sampler(pool))
    for split in ("train", "test"):
        rows = pairs[split]
        assert len(rows) == 4 * len(getattr(task, f"{'train' if split == 'train' else 'heldout'}"
                                            "_prompts"))  # fmt: skip
        assert set(rows["chosen"]) | set(rows["rejected"]) <= set(kept)
    everything = [label_pairs(task.train_prompts, fixed_sampler(pool), task.gold_rewards, 4, 1.0,
                              np.random.default_rng(0), keep).to_dict()
                  for keep in (None, lambda text, ended: True)]  # fmt: skip
    assert everything[0] == everything[1]
    assert (set(everything[0]["chosen"]) | set(everything[0]["rejected"])) - set(kept)


def test_pairs_that_cannot_be_kept_are_reported_missing():
    task = SyntheticTask.from_config(dataclasses.replace(SMALL, pair_coverage=0.5))
    pool = [f"w{a} w{b} w{c}" for a in range(8) for b in range(8) for c in range(8)]
    outside = [text for text in pool if not task.in_pair_support(text, True)][:3]
    with pytest.warns(UserWarning, match="not kept"):
        pairs = task.preference_pairs(fixed_sampler(outside))
    assert pairs["train"].num_rows == 0


@pytest.mark.parametrize(("coverage", "problem"), [(0.0, "> 0"), (1.5, "<= 1"), (1.0, None)])
def test_pair_coverage_is_validated(coverage, problem):
    problems = check_ranges(TaskConfig(pair_coverage=coverage), "data.task.")
    assert problems == ([] if problem is None else [f"data.task.pair_coverage: must be {problem}"
                                                    f", got {coverage}"])  # fmt: skip
