"""Pure critic-free advantage estimators: RLOO, GRPO and REINFORCE with a moving baseline.

Each gives one advantage per response (B,), which :func:`per_token` broadcasts to every real
token of it; the clipped policy loss then treats it like a GAE advantage. GAE itself (with a
critic) is :func:`leash.losses.ppo.gae`.

Group layout: ``B = N x k`` rows, the ``k = group_size`` samples of one prompt adjacent
(rows ``i·k .. i·k + k - 1`` belong to prompt i), the layout of
:func:`leash.rollout.rollout.sample` and of TRL's RLOO and GRPO trainers.
"""

from __future__ import annotations

import torch

GRPO_EPS = 1e-4
"""Added to the group standard deviation in GRPO (TRL 1.16's constant)."""


def sequence_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Sequence-level reward with the KL in it: ``R_i = score_i - kl_coef · Σ_t kl_t``.

    The KL penalty of RLOO (Ahmadian et al. 2024, as TRL's RLOOTrainer applies it) and of
    REINFORCE: the per-token estimates are summed over each response, then weighted.

    Args:
        scores: (B,) score of each response (after any missing-EOS penalty).
        kl: (B, T) per-token KL estimates (``leash.losses.kl``); padding values are ignored.
        mask: (B, T) binary mask of real response tokens.
        kl_coef: weight of the KL penalty.
    Returns:
        (B,) rewards.
    """
    return scores - kl_coef * torch.where(mask > 0, kl, 0.0).sum(dim=1)


def _groups(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B,) -> (B / k, k), refusing a batch that does not split into groups of ``k``."""
    if group_size < 2 or values.shape[0] % group_size:
        raise ValueError(
            f"a group baseline needs groups of >= 2 samples that split the batch exactly; got "
            f"{values.shape[0]} rows in groups of {group_size}"
        )
    return values.view(-1, group_size)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE leave-one-out: ``A_i = R_i - mean of the other k - 1 rewards of its prompt``.

    Equivalently ``k / (k - 1) · (R_i - group mean)``.

    Args:
        rewards: (B,) sequence rewards (:func:`sequence_rewards`), groups adjacent.
        group_size: k, samples per prompt (>= 2).
    Returns:
        (B,) advantages.
    """
    grouped = _groups(rewards, group_size)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).view(-1)


def grpo_advantages(
    scores: torch.Tensor, group_size: int, eps: float = GRPO_EPS
) -> torch.Tensor:
    """GRPO's group-normalised scores (Shao et al. 2024): ``(s_i - mean) / (std + eps)``.

    Mean and standard deviation (unbiased, Bessel-corrected, as TRL's) are those of the k
    scores of the same prompt; the KL does not enter here (GRPO puts it in the loss).

    Args:
        scores: (B,) score of each response, groups adjacent.
        group_size: k, samples per prompt (>= 2).
        eps: keeps a group of equal scores at advantage 0.
    Returns:
        (B,) advantages.
    """
    grouped = _groups(scores, group_size)
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, keepdim=True)
    return ((grouped - mean) / (std + eps)).view(-1)


def reinforce_advantages(rewards: torch.Tensor, baseline: float) -> torch.Tensor:
    """REINFORCE with a baseline: ``A_i = R_i - b``.

    Args:
        rewards: (B,) sequence rewards (:func:`sequence_rewards`).
        baseline: b, the moving average of earlier batches' mean reward (before this batch).
    Returns:
        (B,) advantages.
    """
    return rewards - baseline


def per_token(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Broadcast one advantage per response to each of its real tokens.

    Args:
        advantages: (B,) sequence advantages.
        mask: (B, T) binary mask of real response tokens.
    Returns:
        (B, T) advantages, 0 on padding.
    """
    return torch.where(mask > 0, advantages.unsqueeze(1), 0.0)


class MovingAverageBaseline:
    """REINFORCE's baseline: an exponential moving average of the batch mean reward.

    ``update(mean)`` sets ``value = decay · value + (1 - decay) · mean``; the value starts at 0.
    """

    def __init__(self, decay: float, value: float = 0.0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MovingAverageBaseline needs 0 <= decay < 1, got {decay}")
        self.decay = float(decay)
        self.value = float(value)

    def update(self, mean_reward: float) -> None:
        """Move the baseline towards the mean reward of the batch just used."""
        self.value = self.decay * self.value + (1.0 - self.decay) * float(mean_reward)
