"""Win rate against the reference: ties count half, the standard error is over prompts."""

from __future__ import annotations

import math

import pytest
import torch

from leash.evaluation.win_rate import win_fractions, win_rate


def test_wins_ties_and_losses_per_prompt():
    # prompt 0: win (2 > 1), tie (1 == 1)  -> (1 + 0.5) / 2 = 0.75
    # prompt 1: loss (0 < 3), win (5 > 4)  -> (0 + 1) / 2 = 0.5
    policy = torch.tensor([2.0, 1.0, 0.0, 5.0])
    reference = torch.tensor([1.0, 1.0, 3.0, 4.0])
    fractions = win_fractions(policy, reference, [0, 0, 1, 1])
    torch.testing.assert_close(fractions, torch.tensor([0.75, 0.5], dtype=torch.float64))
    rate, error = win_rate(policy, reference, [0, 0, 1, 1])
    # mean 0.625; sample std of (0.75, 0.5) = 0.1767767; / sqrt(2) = 0.125
    assert rate == pytest.approx(0.625)
    assert error == pytest.approx(0.125)


def test_identical_samples_give_one_half_exactly():
    scores = torch.tensor([0.3, -1.0, 2.0, 2.0, 0.1, 0.0])
    rate, error = win_rate(scores, scores.clone(), [0, 0, 1, 1, 2, 2])
    assert rate == 0.5 and error == 0.0


def test_prompts_are_grouped_wherever_their_samples_are():
    # prompt 7's two samples are not adjacent; it wins both, prompt 3 loses its only sample.
    fractions = win_fractions(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]),
                              [7, 3, 7])
    torch.testing.assert_close(fractions, torch.tensor([1.0, 0.0], dtype=torch.float64))
    rate, error = win_rate(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]),
                           [7, 3, 7])
    assert rate == 0.5 and error == pytest.approx(math.sqrt(0.5) / math.sqrt(2))
