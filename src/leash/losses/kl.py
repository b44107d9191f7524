"""Per-token KL estimators and the KL-coefficient controllers of PPO-RLHF.

The estimators follow Schulman's note "Approximating KL Divergence" (2020): with the ratio
``r = π_ref(y_t) / π(y_t)`` of the SAMPLED token ``y_t ~ π``, ``k1 = -log r`` is unbiased but can
be negative, ``k2 = ½·(log r)²`` is biased but low variance, and ``k3 = (r - 1) - log r`` is
unbiased and never negative. All three are exactly 0 when the policy equals the reference.

They are per-token and unmasked: padding positions hold whatever the inputs hold there, and
the caller masks them (``leash.losses.ppo.shape_rewards`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Unbiased per-token KL estimate ``logp - ref_logp``; negative where π_ref favours the token.

    Args:
        logp: (B, T) log-probs of the sampled tokens under the policy.
        ref_logp: (B, T) log-probs of the same tokens under the reference.
    Returns:
        (B, T) estimates.
    """
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Low-variance (biased) per-token KL estimate ``½·(logp - ref_logp)²``; never negative.

    Args:
        logp: (B, T) log-probs of the sampled tokens under the policy.
        ref_logp: (B, T) log-probs of the same tokens under the reference.
    Returns:
        (B, T) estimates.
    """
    return 0.5 * (logp - ref_logp).square()


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Unbiased, never negative per-token KL estimate ``exp(d) - 1 - d``, ``d = ref_logp - logp``.

    ``expm1`` keeps the ``exp(d) - 1`` part accurate when d is tiny (policy near the reference).

    Args:
        logp: (B, T) log-probs of the sampled tokens under the policy.
        ref_logp: (B, T) log-probs of the same tokens under the reference.
    Returns:
        (B, T) estimates.
    """
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL estimate by name, so the estimator is a config value ("k1", "k2" or "k3").

    Args:
        logp: (B, T) log-probs of the sampled tokens under the policy.
        ref_logp: (B, T) log-probs of the same tokens under the reference.
        estimator: "k1", "k2" or "k3".
    Returns:
        (B, T) estimates.
    Raises:
        ValueError: for any other estimator name.
    """
    if estimator not in _ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {list(_ESTIMATORS)}")
    return _ESTIMATORS[estimator](logp, ref_logp)


class KLController(Protocol):
    """What PPO needs from a KL coefficient: its current value and a per-batch update."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        """Adjust ``value`` after a rollout batch whose mean sequence KL was ``current_kl``."""


class FixedKLController:
    """A constant KL coefficient: ``update`` leaves ``value`` unchanged."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Keep the coefficient fixed (the interface of ``AdaptiveKLController``)."""


class AdaptiveKLController:
    """Ziegler et al. (2019) proportional controller steering the KL towards ``target``.

    After each batch: ``e = clip(current_kl / target - 1, -0.2, 0.2)`` and
    ``value *= 1 + e·n_steps / horizon``, so the coefficient grows while the KL is above the
    target and shrinks while below, by at most 20 % per ``horizon`` samples.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        if init_kl_coef < 0 or target <= 0 or horizon <= 0:
            raise ValueError(
                "AdaptiveKLController needs init_kl_coef >= 0, target > 0 and horizon > 0; got "
                f"{init_kl_coef}, {target}, {horizon}"
            )
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Scale the coefficient by the clipped proportional error of the measured KL.

        Args:
            current_kl: mean sequence-level KL of the batch just collected.
            n_steps: samples (rollouts) in that batch.
        """
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
