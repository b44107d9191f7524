"""Preference pairs as in the DPO paper: two samples of the SFT policy, labelled by the gold reward.

Labels follow Bradley-Terry with a temperature T: ``P(a preferred to b) = σ((r_a - r_b) / T)``;
T = 0 gives deterministic labels (the higher reward wins). Pairs that carry no preference are
not kept: two responses with the same text (including one that ended and one cut with the same
words, which the text cannot tell apart), and, at T = 0, ties in gold reward. Prompts whose
pairs fell short are sampled again, twice as many samples per missing pair each round, up to
``MAX_ROUNDS`` rounds; what is still missing then (a policy that only ever writes one response)
is reported with a warning, never padded.

Coverage (after Xu et al. 2024): a ``keep`` predicate restricts the pairs to a subset of
responses; a sampled pair with a response outside it is dropped like a tie, and sampled again.
:func:`in_subset` is the task's subset: each response in or out by a seeded hash, independently.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from datasets import Dataset

from leash.data.types import SampleFn

MAX_ROUNDS = 6
RewardFn = Callable[[Sequence[str], Sequence[Sequence[str]], Sequence[bool]], np.ndarray]
"""``reward_fn(prompts, response_words, ended) -> (B,) gold rewards``."""
KeepFn = Callable[[str, bool], bool]
"""``keep(text, ended)``: whether a response may appear in a pair."""

PAIR_COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "chosen_gold_reward",
    "rejected_gold_reward",
    "chosen_ended",
    "rejected_ended",
)


def bradley_terry_wins(
    reward_a: np.ndarray, reward_b: np.ndarray, temperature: float, rng: np.random.Generator
) -> np.ndarray:
    """Whether ``a`` is preferred in each pair: (B,) rewards in, (B,) bools out.

    T > 0 draws ``a`` with probability ``σ((r_a - r_b) / T)``; T = 0 returns ``r_a > r_b``
    (a tie comes out as False: callers drop ties).
    """
    if temperature == 0:
        return reward_a > reward_b
    prob_a = 1.0 / (1.0 + np.exp(-(reward_a - reward_b) / temperature))
    return rng.random(len(reward_a)) < prob_a


def in_subset(text: str, ended: bool, fraction: float, seed: int) -> bool:
    """Whether a response lies in the seeded random subset holding ``fraction`` of all responses.

    Its hash ``u = sha256(seed, ended, text)`` read as a number in [0, 1) must be below
    ``fraction``: each response is in with probability ``fraction``, independently of the
    others, and the subsets of one seed are nested (a smaller fraction keeps a subset of a
    larger one's responses); ``fraction = 1`` keeps every response.
    """
    digest = hashlib.sha256(f"{seed}\n{int(ended)}\n{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def label_pairs(
    prompts: list[str],
    sample_fn: SampleFn,
    reward_fn: RewardFn,
    pairs_per_prompt: int,
    temperature: float,
    rng: np.random.Generator,
    keep: KeepFn | None = None,
) -> Dataset:
    """Sample, pair and label responses until every prompt has ``pairs_per_prompt`` pairs.

    ``keep`` (None: every response) drops a sampled pair unless both responses pass it. Rows
    come grouped by prompt, in prompt order; columns are ``PAIR_COLUMNS``.
    """
    missing = [pairs_per_prompt] * len(prompts)
    rows: list[list[dict]] = [[] for _ in prompts]
    for round_index in range(MAX_ROUNDS):
        active = [index for index, need in enumerate(missing) if need > 0]
        if not active:
            break
        num_samples = 2 * max(missing[i] for i in active) * 2**round_index
        samples = sample_fn([prompts[index] for index in active], num_samples)
        by_prompt: dict[int, list[tuple[str, bool]]] = {}
        for local, text, ended in zip(
            samples.prompt_index, samples.text, samples.ended, strict=True
        ):
            by_prompt.setdefault(active[local], []).append((text, ended))
        candidates = [
            (index, first, second)
            for index, drawn in by_prompt.items()
            for first, second in zip(drawn[0::2], drawn[1::2], strict=False)
            if first[0] != second[0] and (keep is None or (keep(*first) and keep(*second)))
        ]
        if not candidates:
            continue
        reward_a = _rewards(reward_fn, prompts, [(i, a) for i, a, _ in candidates])
        reward_b = _rewards(reward_fn, prompts, [(i, b) for i, _, b in candidates])
        a_wins = bradley_terry_wins(reward_a, reward_b, temperature, rng)
        for (index, a, b), r_a, r_b, win in zip(
            candidates, reward_a, reward_b, a_wins, strict=True
        ):
            if missing[index] == 0 or (temperature == 0 and r_a == r_b):
                continue
            (chosen, r_c), (rejected, r_r) = ((a, r_a), (b, r_b)) if win else ((b, r_b), (a, r_a))
            rows[index].append(_row(prompts[index], chosen, rejected, r_c, r_r))
            missing[index] -= 1
    if sum(missing):
        warnings.warn(
            f"{sum(missing)} preference pairs missing after {MAX_ROUNDS} rounds of sampling "
            f"(identical responses, ties{'' if keep is None else ' or responses not kept'}); "
            f"kept {sum(map(len, rows))}",
            stacklevel=2,
        )
    flat = [row for group in rows for row in group]
    return Dataset.from_dict({column: [row[column] for row in flat] for column in PAIR_COLUMNS})


def _rewards(
    reward_fn: RewardFn, prompts: list[str], responses: list[tuple[int, tuple[str, bool]]]
) -> np.ndarray:
    """Gold rewards of (prompt index, (text, ended)) responses in one batched call."""
    return reward_fn(
        [prompts[index] for index, _ in responses],
        [text.split() for _, (text, _) in responses],
        [ended for _, (_, ended) in responses],
    )


def _row(
    prompt: str, chosen: tuple[str, bool], rejected: tuple[str, bool], r_c: float, r_r: float
) -> dict:
    return {
        "prompt": prompt,
        "chosen": chosen[0],
        "rejected": rejected[0],
        "chosen_gold_reward": float(r_c),
        "rejected_gold_reward": float(r_r),
        "chosen_ended": chosen[1],
        "rejected_ended": rejected[1],
    }
