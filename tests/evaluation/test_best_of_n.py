"""Exact best-of-N: hand-computed on a toy, and the known KL bound log N - (N-1)/N."""

from __future__ import annotations

import math

import pytest
import torch

from leash.evaluation.best_of_n import best_of_n
from leash.evaluation.oracle import ExactDistribution, exact_gold_reward, exact_kl


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
