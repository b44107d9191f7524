"""Preference losses: the DPO family and the Bradley–Terry reward-model loss.

Pure functions, tensors in and tensors out. Every DPO-family loss takes summed response
log-probs ``(B,)`` and returns per-pair losses with the implicit rewards TRL 1.16 logs for the
same loss type (detached: they are metrics and classifier scores, not training signals):

- sigmoid, robust, ipo, hinge: ``beta * (log pi - log pi_ref)`` of the *summed* log-probs (for
  IPO too, although its loss uses per-token averages: TRL's DPOTrainer logs the summed form);
- simpo: ``beta * (log pi / length)`` (TRL's CPOTrainer with ``loss_type="simpo"``).

With ``h = (log pi_c - log pi_ref_c) - (log pi_r - log pi_ref_r)`` and ``z = beta * h``, the
sigmoid loss is ``-log sigma(z)``: exactly ln 2 at step 0, where policy == reference.
All arithmetic runs in float32 whatever the input dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "robust", "ipo", "hinge", "simpo")
"""Names accepted by :func:`preference_loss`."""


class PreferenceLossOutput(NamedTuple):
    """Per-pair result of a DPO-family loss."""

    losses: torch.Tensor
    """(B,) loss of each pair; the training loss is its mean."""
    chosen_rewards: torch.Tensor
    """(B,) implicit reward of the chosen response, detached."""
    rejected_rewards: torch.Tensor
    """(B,) implicit reward of the rejected response, detached."""


def _smoothed_logistic(z: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-(1-eps)·log sigma(z) - eps·log sigma(-z)``: the logistic loss against soft labels.

    Args:
        z: (B,) preference logits.
    """
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def _log_ratios(policy_logps: torch.Tensor, reference_logps: torch.Tensor) -> torch.Tensor:
    """``log pi - log pi_ref`` in float32.

    Args:
        policy_logps: (B,) summed response log-probs under the policy.
        reference_logps: (B,) the same under the reference.
    """
    return policy_logps.float() - reference_logps.float()


def _per_token(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Divide summed log-probs by the response length, clamped to at least 1 token (as TRL does).

    Args:
        logps: (B,) summed log-probs (or log-ratios).
        lengths: (B,) number of response tokens.
    """
    return logps.float() / lengths.float().clamp(min=1.0)


def _reference_output(
    losses: torch.Tensor, chosen_ratios: torch.Tensor, rejected_ratios: torch.Tensor, beta: float
) -> PreferenceLossOutput:
    """Pack losses with the implicit rewards ``beta * log-ratio``.

    Args:
        losses: (B,) per-pair losses.
        chosen_ratios: (B,) ``log pi_c - log pi_ref_c``.
        rejected_ratios: (B,) ``log pi_r - log pi_ref_r``.
    """
    return PreferenceLossOutput(
        losses, beta * chosen_ratios.detach(), beta * rejected_ratios.detach()
    )


def sigmoid_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """DPO ``-log sigma(z)``; with ``label_smoothing`` eps > 0, conservative DPO (cDPO).

    cDPO treats each label as flipped with probability eps:
    ``-(1-eps)·log sigma(z) - eps·log sigma(-z)``.

    Args:
        policy_chosen_logps: (B,) summed log-probs of the chosen responses under the policy.
        policy_rejected_logps: (B,) the same for the rejected responses.
        reference_chosen_logps: (B,) chosen responses under the reference.
        reference_rejected_logps: (B,) rejected responses under the reference.
        beta: KL-leash strength; the implicit reward is ``beta * log pi/pi_ref``.
        label_smoothing: assumed label-flip probability eps in [0, 0.5).
    """
    chosen = _log_ratios(policy_chosen_logps, reference_chosen_logps)
    rejected = _log_ratios(policy_rejected_logps, reference_rejected_logps)
    losses = _smoothed_logistic(beta * (chosen - rejected), label_smoothing)
    return _reference_output(losses, chosen, rejected, beta)


def robust_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    label_smoothing: float,
) -> PreferenceLossOutput:
    """Robust DPO: ``[-(1-eps)·log sigma(z) + eps·log sigma(-z)] / (1 - 2·eps)``.

    Unlike cDPO, this is an unbiased estimate of the clean-label DPO loss when each label is
    flipped with probability eps (Chowdhury et al., 2024); eps = 0 gives DPO.

    Args:
        policy_chosen_logps: (B,) summed log-probs of the chosen responses under the policy.
        policy_rejected_logps: (B,) the same for the rejected responses.
        reference_chosen_logps: (B,) chosen responses under the reference.
        reference_rejected_logps: (B,) rejected responses under the reference.
        beta: KL-leash strength.
        label_smoothing: label-flip probability eps, in [0, 0.5).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust loss needs label_smoothing in [0, 0.5), got {label_smoothing}")
    chosen = _log_ratios(policy_chosen_logps, reference_chosen_logps)
    rejected = _log_ratios(policy_rejected_logps, reference_rejected_logps)
    z = beta * (chosen - rejected)
    clean = -(1 - label_smoothing) * F.logsigmoid(z)
    flipped = -label_smoothing * F.logsigmoid(-z)
    losses = (clean - flipped) / (1 - 2 * label_smoothing)
    return _reference_output(losses, chosen, rejected, beta)


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
) -> PreferenceLossOutput:
    """IPO ``(h_avg - 1/(2·beta))²``, with h built from per-token-averaged log-ratios.

    The squared loss regresses the log-ratio gap onto ``1/(2·beta)`` (beta is the paper's tau);
    averaging per token keeps that target comparable across response lengths. Rewards are
    ``beta *`` the summed log-ratios, as TRL 1.16 logs them.

    Args:
        policy_chosen_logps: (B,) summed log-probs of the chosen responses under the policy.
        policy_rejected_logps: (B,) the same for the rejected responses.
        reference_chosen_logps: (B,) chosen responses under the reference.
        reference_rejected_logps: (B,) rejected responses under the reference.
        beta: regularisation strength tau.
        chosen_lengths: (B,) response tokens of each chosen response (clamped to >= 1).
        rejected_lengths: (B,) response tokens of each rejected response.
    """
    chosen = _log_ratios(policy_chosen_logps, reference_chosen_logps)
    rejected = _log_ratios(policy_rejected_logps, reference_rejected_logps)
    gap = _per_token(chosen, chosen_lengths) - _per_token(rejected, rejected_lengths)
    losses = (gap - 1 / (2 * beta)) ** 2
    return _reference_output(losses, chosen, rejected, beta)


def hinge_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float,
) -> PreferenceLossOutput:
    """SLiC hinge ``relu(1 - z)``: zero once the reward margin z exceeds 1.

    Args:
        policy_chosen_logps: (B,) summed log-probs of the chosen responses under the policy.
        policy_rejected_logps: (B,) the same for the rejected responses.
        reference_chosen_logps: (B,) chosen responses under the reference.
        reference_rejected_logps: (B,) rejected responses under the reference.
        beta: scale of the log-ratio gap (1/beta is the hinge margin in log-ratio units).
    """
    chosen = _log_ratios(policy_chosen_logps, reference_chosen_logps)
    rejected = _log_ratios(policy_rejected_logps, reference_rejected_logps)
    losses = torch.relu(1 - beta * (chosen - rejected))
    return _reference_output(losses, chosen, rejected, beta)


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    beta: float,
    gamma: float,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """SimPO: reference-free, length-normalised ``-log sigma(beta·(avg_c - avg_r) - gamma)``.

    The reward ``beta * log pi / length`` needs no reference model; gamma is the target reward
    margin. Label smoothing is applied as in TRL's CPOTrainer (the cDPO form).

    Args:
        policy_chosen_logps: (B,) summed log-probs of the chosen responses under the policy.
        policy_rejected_logps: (B,) the same for the rejected responses.
        beta: reward scale.
        gamma: target reward margin.
        chosen_lengths: (B,) response tokens of each chosen response (clamped to >= 1).
        rejected_lengths: (B,) response tokens of each rejected response.
        label_smoothing: assumed label-flip probability eps in [0, 0.5).
    """
    chosen_rewards = beta * _per_token(policy_chosen_logps, chosen_lengths)
    rejected_rewards = beta * _per_token(policy_rejected_logps, rejected_lengths)
    losses = _smoothed_logistic(chosen_rewards - rejected_rewards - gamma, label_smoothing)
    return PreferenceLossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())


def preference_loss(
    loss_type: str,
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor | None,
    reference_rejected_logps: torch.Tensor | None,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> PreferenceLossOutput:
    """Compute the DPO-family loss named ``loss_type`` (one of :data:`LOSS_TYPES`).

    One entry point so that a LightningModule picks the loss from config without branching.
    ``label_smoothing`` is used by sigmoid (cDPO), robust and simpo, ignored by ipo and hinge.

    Args:
        loss_type: "sigmoid", "robust", "ipo", "hinge" or "simpo" (a str-valued enum works too).
        policy_chosen_logps: (B,) summed log-probs of the chosen responses under the policy.
        policy_rejected_logps: (B,) the same for the rejected responses.
        reference_chosen_logps: (B,) chosen responses under the reference; None only for simpo.
        reference_rejected_logps: (B,) rejected responses under the reference; None only for
            simpo.
        beta: KL-leash strength (tau for IPO, reward scale for SimPO).
        label_smoothing: label-flip probability eps in [0, 0.5).
        simpo_gamma: SimPO target reward margin.
        chosen_lengths: (B,) chosen response token counts; required by ipo and simpo.
        rejected_lengths: (B,) rejected response token counts; required by ipo and simpo.
    Raises:
        ValueError: unknown loss type, or a tensor the loss needs is missing.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
    if loss_type in ("ipo", "simpo") and (chosen_lengths is None or rejected_lengths is None):
        raise ValueError(f"loss_type {loss_type!r} needs chosen_lengths and rejected_lengths")
    lengths = dict(chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
    if loss_type == "simpo":
        return simpo_loss(policy_chosen_logps, policy_rejected_logps, beta=beta,
                          gamma=simpo_gamma, label_smoothing=label_smoothing, **lengths)
    if reference_chosen_logps is None or reference_rejected_logps is None:
        raise ValueError(f"loss_type {loss_type!r} needs reference log-probs (only simpo does not)")
    logps = (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps)
    if loss_type == "sigmoid":
        return sigmoid_loss(*logps, beta=beta, label_smoothing=label_smoothing)
    if loss_type == "robust":
        return robust_loss(*logps, beta=beta, label_smoothing=label_smoothing)
    if loss_type == "ipo":
        return ipo_loss(*logps, beta=beta, **lengths)
    return hinge_loss(*logps, beta=beta)


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    margin: float | torch.Tensor = 0.0,
    center_coef: float = 0.0,
) -> torch.Tensor:
    """Per-pair Bradley–Terry loss ``-log sigma(r_c - r_r - margin) + c·(r_c + r_r)²``.

    The margin demands that the chosen reward win by at least that much; the centring term
    (Eisenstein et al., 2023) pins rewards near zero, since the likelihood only sees
    differences. Its batch mean equals TRL 1.16's RewardTrainer loss, which adds
    ``c · mean((r_c + r_r)²)`` to the mean of the logistic term.

    Args:
        chosen_rewards: (B,) scalar reward of each chosen response.
        rejected_rewards: (B,) scalar reward of each rejected response.
        margin: a float, or (B,) per-pair margins.
        center_coef: weight c of the centring penalty; 0 disables it.
    Returns:
        (B,) float32 per-pair losses.
    """
    chosen = chosen_rewards.float()
    rejected = rejected_rewards.float()
    if isinstance(margin, torch.Tensor):
        margin = margin.float()
    return -F.logsigmoid(chosen - rejected - margin) + center_coef * (chosen + rejected) ** 2
