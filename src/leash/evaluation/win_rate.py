"""Win rate of a policy against the reference, with a standard error over prompts.

For every held-out prompt, the policy's k samples are paired with the reference's k samples in
order (the evaluator draws both with the same random stream, so the pairing is fixed): a win
counts 1, a tie 1/2, a loss 0. Samples of one prompt are not independent, so the standard
error treats prompts as the unit: the mean of the per-prompt win fractions and its standard
error ``std(per-prompt) / sqrt(P)`` (sample std, P prompts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def win_fractions(
    policy: torch.Tensor, reference: torch.Tensor, prompt_index: Sequence[int]
) -> torch.Tensor:
    """Per-prompt win fraction of the policy: ``mean(1[p > r] + 1/2 · 1[p == r])``.

    Args:
        policy: (N,) scores of the policy's samples.
        reference: (N,) scores of the reference's samples, paired row by row.
        prompt_index: (N,) the prompt of each row.
    Returns:
        (P,) float64 fractions, one per distinct prompt, in order of first appearance.
    """
    outcome = (policy > reference).double() + 0.5 * (policy == reference).double()
    prompts = list(dict.fromkeys(prompt_index))
    index = torch.tensor([prompts.index(p) for p in prompt_index])
    totals = torch.zeros(len(prompts), dtype=torch.float64).index_add_(0, index, outcome)
    counts = torch.zeros(len(prompts), dtype=torch.float64).index_add_(
        0, index, torch.ones_like(outcome)
    )
    return totals / counts


def win_rate(
    policy: torch.Tensor, reference: torch.Tensor, prompt_index: Sequence[int]
) -> tuple[float, float]:
    """(win rate, its standard error over prompts); the error is 0 for a single prompt."""
    fractions = win_fractions(policy, reference, prompt_index)
    if len(fractions) < 2:
        return float(fractions.mean()), 0.0
    return float(fractions.mean()), float(fractions.std() / math.sqrt(len(fractions)))
