"""implicit_rm_metrics: the implicit reward model as a classifier of held-out pairs, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from leash.modules.evaluated import implicit_rm_metrics

NAN = float("nan")


def test_accuracy_counts_a_tie_as_wrong_and_gold_figures_skip_pairs_without_gold():
    margins = torch.tensor([0.5, -1.0, 0.0, 2.0])
    gold = torch.tensor([1.0, 1.0, -1.0, NAN])
    metrics = implicit_rm_metrics(margins, gold)
    # chosen higher in pairs 0 and 3; pair 2 is a tie: 2 of 4.
    assert metrics["eval/implicit_rm_accuracy"].item() == 0.5
    # Pairs 0-2 have a gold margin: signs (+, -, 0) against (+, +, -) agree once.
    assert metrics["eval/implicit_rm_gold_accuracy"].item() == pytest.approx(1 / 3)
    # Pearson over pairs 0-2: x - mean = (2/3, -5/6, 1/6), y - mean = (2/3, 2/3, -4/3);
    # sum xy = -1/3, sum x^2 = 7/6, sum y^2 = 8/3, so r = (-1/3) / sqrt(28/9) = -1/sqrt(28).
    assert metrics["eval/implicit_rm_gold_corr"].item() == pytest.approx(-1 / math.sqrt(28))


def test_without_gold_only_the_accuracy_and_at_step_zero_it_is_zero():
    metrics = implicit_rm_metrics(torch.zeros(3), torch.full((3,), NAN))
    assert metrics == {"eval/implicit_rm_accuracy": torch.tensor(0.0)}
