"""Hand-computed checks of the DPO-family losses and the Bradley–Terry loss."""

from __future__ import annotations

import math

import pytest
import torch

from leash.config import DPOLoss
from leash.losses.preference import (
    LOSS_TYPES,
    bradley_terry_loss,
    hinge_loss,
    ipo_loss,
    preference_loss,
    robust_loss,
    sigmoid_loss,
    simpo_loss,
)

BETA = 0.5
# Three pairs. Log-ratios (policy - reference) and h = chosen ratio - rejected ratio:
#   pair 0: chosen -1.0-(-1.5) =  0.5, rejected -2.0-(-1.5) = -0.5, h =  1.0, z = 0.5*h =  0.5
#   pair 1: chosen -3.0-(-2.0) = -1.0, rejected -1.0-(-2.0) =  1.0, h = -2.0, z = -1.0
#   pair 2: chosen -0.5-(-1.0) =  0.5, rejected -6.0-(-2.5) = -3.5, h =  4.0, z =  2.0
POLICY_CHOSEN = torch.tensor([-1.0, -3.0, -0.5])
POLICY_REJECTED = torch.tensor([-2.0, -1.0, -6.0])
REFERENCE_CHOSEN = torch.tensor([-1.5, -2.0, -1.0])
REFERENCE_REJECTED = torch.tensor([-1.5, -2.0, -2.5])
LOGPS = (POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED)
Z = (0.5, -1.0, 2.0)
# Implicit rewards beta * log-ratio = 0.5 * (0.5, -1.0, 0.5) and 0.5 * (-0.5, 1.0, -3.5).
CHOSEN_REWARDS = [0.25, -0.5, 0.25]
REJECTED_REWARDS = [-0.25, 0.5, -1.75]
CHOSEN_LENGTHS = torch.tensor([2, 4, 1])
REJECTED_LENGTHS = torch.tensor([1, 2, 7])


def softplus(x: float) -> float:
    """-log sigma(-x) = log(1 + e^x), written out for the expected values."""
    return math.log(1 + math.exp(x))


def assert_close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), rtol=0, atol=1e-6)


def assert_reference_rewards(out) -> None:
    assert_close(out.chosen_rewards, CHOSEN_REWARDS)
    assert_close(out.rejected_rewards, REJECTED_REWARDS)


def test_sigmoid_hand_computed():
    out = sigmoid_loss(*LOGPS, beta=BETA)
    # -log sigma(z) = log(1 + e^-z)
    expected = [
        math.log(1 + math.exp(-0.5)),
        math.log(1 + math.exp(1.0)),
        math.log(1 + math.exp(-2.0)),
    ]
    assert_close(out.losses, expected)
    assert_reference_rewards(out)


def test_cdpo_hand_computed():
    out = sigmoid_loss(*LOGPS, beta=BETA, label_smoothing=0.1)
    # -(1 - 0.1) log sigma(z) - 0.1 log sigma(-z) = 0.9 log(1 + e^-z) + 0.1 log(1 + e^z)
    expected = [0.9 * softplus(-z) + 0.1 * softplus(z) for z in Z]
    assert_close(out.losses, expected)
    assert_reference_rewards(out)


def test_robust_hand_computed():
    out = robust_loss(*LOGPS, beta=BETA, label_smoothing=0.1)
    # [-(1 - 0.1) log sigma(z) + 0.1 log sigma(-z)] / (1 - 0.2)
    expected = [(0.9 * softplus(-z) - 0.1 * softplus(z)) / 0.8 for z in Z]
    assert_close(out.losses, expected)
    assert expected[0] == pytest.approx((0.9 * 0.474077 - 0.1 * 0.974077) / 0.8, abs=1e-6)
    assert_reference_rewards(out)


def test_ipo_hand_computed_per_token_average():
    out = ipo_loss(
        *LOGPS, beta=BETA, chosen_lengths=CHOSEN_LENGTHS, rejected_lengths=REJECTED_LENGTHS
    )
    # target 1 / (2 * 0.5) = 1; per-token gaps:
    #   pair 0:  0.5/2 - (-0.5/1) =  0.75  -> (0.75 - 1)^2  = 0.0625
    #   pair 1: -1.0/4 - ( 1.0/2) = -0.75  -> (-0.75 - 1)^2 = 3.0625
    #   pair 2:  0.5/1 - (-3.5/7) =  1.0   -> (1.0 - 1)^2   = 0.0
    assert_close(out.losses, [0.0625, 3.0625, 0.0])
    # Rewards stay beta * summed log-ratio (TRL 1.16 logs these for IPO too).
    assert_reference_rewards(out)


def test_hinge_hand_computed():
    out = hinge_loss(*LOGPS, beta=BETA)
    # relu(1 - z): 1 - 0.5 = 0.5; 1 + 1 = 2; max(0, 1 - 2) = 0
    assert_close(out.losses, [0.5, 2.0, 0.0])
    assert_reference_rewards(out)


def test_simpo_hand_computed():
    out = simpo_loss(
        POLICY_CHOSEN,
        POLICY_REJECTED,
        beta=2.0,
        gamma=0.5,
        chosen_lengths=CHOSEN_LENGTHS,
        rejected_lengths=REJECTED_LENGTHS,
    )
    # averages: pair 0 (-1/2, -2/1), pair 1 (-3/4, -1/2), pair 2 (-0.5/1, -6/7)
    z = [2.0 * (-0.5 - -2.0) - 0.5, 2.0 * (-0.75 - -0.5) - 0.5, 2.0 * (-0.5 - -6.0 / 7) - 0.5]
    assert z[:2] == [2.5, -1.0]
    assert_close(out.losses, [softplus(-v) for v in z])
    assert_close(out.chosen_rewards, [2.0 * -0.5, 2.0 * -0.75, 2.0 * -0.5])
    assert_close(out.rejected_rewards, [2.0 * -2.0, 2.0 * -0.5, 2.0 * -6.0 / 7])


def test_simpo_label_smoothing_hand_computed():
    out = simpo_loss(
        POLICY_CHOSEN[:1],
        POLICY_REJECTED[:1],
        beta=2.0,
        gamma=0.5,
        chosen_lengths=CHOSEN_LENGTHS[:1],
        rejected_lengths=REJECTED_LENGTHS[:1],
        label_smoothing=0.2,
    )
    # z = 2.5 (above): 0.8 log(1 + e^-2.5) + 0.2 log(1 + e^2.5)
    assert_close(out.losses, [0.8 * softplus(-2.5) + 0.2 * softplus(2.5)])


def test_step_zero_policy_equals_reference():
    policy_chosen = torch.tensor([-3.7, -12.25, -0.4])
    policy_rejected = torch.tensor([-8.1, -2.0, -5.5])
    same = (policy_chosen, policy_rejected, policy_chosen.clone(), policy_rejected.clone())
    ln2 = math.log(2)
    outputs = {
        "sigmoid": sigmoid_loss(*same, beta=0.1),
        "cdpo": sigmoid_loss(*same, beta=0.1, label_smoothing=0.2),
        # (0.8 ln 2 - 0.2 ln 2) / 0.6 = ln 2
        "robust": robust_loss(*same, beta=0.1, label_smoothing=0.2),
        "ipo": ipo_loss(
            *same,
            beta=0.1,
            chosen_lengths=torch.tensor([3, 5, 1]),
            rejected_lengths=torch.tensor([2, 2, 9]),
        ),
        "hinge": hinge_loss(*same, beta=0.1),
    }
    expected = {
        "sigmoid": ln2,
        "cdpo": ln2,
        "robust": ln2,
        "ipo": (1 / (2 * 0.1)) ** 2,
        "hinge": 1.0,
    }
    for name, out in outputs.items():
        assert_close(out.losses, [expected[name]] * 3)
        assert_close(out.chosen_rewards, [0.0] * 3)
        assert_close(out.rejected_rewards, [0.0] * 3)


@pytest.mark.parametrize("loss_type", ["sigmoid", "robust", "ipo", "hinge"])
def test_shift_invariance_of_reference_losses(loss_type):
    kwargs = dict(
        beta=BETA,
        label_smoothing=0.1,
        chosen_lengths=CHOSEN_LENGTHS,
        rejected_lengths=REJECTED_LENGTHS,
    )
    base = preference_loss(loss_type, *LOGPS, **kwargs)
    # a per pair added to policy and reference chosen, b to policy and reference rejected
    a = torch.tensor([5.0, -3.0, 0.25])
    b = torch.tensor([-7.0, 2.0, 0.0])
    shifted = preference_loss(
        loss_type,
        POLICY_CHOSEN + a,
        POLICY_REJECTED + b,
        REFERENCE_CHOSEN + a,
        REFERENCE_REJECTED + b,
        **kwargs,
    )
    torch.testing.assert_close(shifted.losses, base.losses, rtol=0, atol=1e-6)
    torch.testing.assert_close(shifted.chosen_rewards, base.chosen_rewards, rtol=0, atol=1e-6)
    torch.testing.assert_close(shifted.rejected_rewards, base.rejected_rewards, rtol=0, atol=1e-6)


def test_simpo_invariant_to_per_token_shift():
    kwargs = dict(
        beta=2.0, gamma=0.5, chosen_lengths=CHOSEN_LENGTHS, rejected_lengths=REJECTED_LENGTHS
    )
    base = simpo_loss(POLICY_CHOSEN, POLICY_REJECTED, **kwargs)
    # adding c to every token's log-prob adds c * length to each sum and c to each average
    c = -0.3
    shifted = simpo_loss(
        POLICY_CHOSEN + c * CHOSEN_LENGTHS, POLICY_REJECTED + c * REJECTED_LENGTHS, **kwargs
    )
    torch.testing.assert_close(shifted.losses, base.losses, rtol=0, atol=1e-6)


def test_sigmoid_gradient_raises_chosen_and_lowers_rejected():
    policy_chosen = POLICY_CHOSEN.clone().requires_grad_()
    policy_rejected = POLICY_REJECTED.clone().requires_grad_()
    out = sigmoid_loss(
        policy_chosen, policy_rejected, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=BETA
    )
    out.losses.sum().backward()
    # d/d logpi_c of -log sigma(z) = -beta * sigma(-z); d/d logpi_r = +beta * sigma(-z)
    expected = [BETA / (1 + math.exp(z)) for z in Z]
    assert_close(policy_chosen.grad, [-g for g in expected])
    assert_close(policy_rejected.grad, expected)
    assert (policy_chosen.grad < 0).all() and (policy_rejected.grad > 0).all()


def test_rewards_are_detached():
    policy_chosen = POLICY_CHOSEN.clone().requires_grad_()
    out = sigmoid_loss(
        policy_chosen, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=BETA
    )
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad


def test_robust_with_zero_smoothing_equals_sigmoid():
    robust = robust_loss(*LOGPS, beta=BETA, label_smoothing=0.0)
    sigmoid = sigmoid_loss(*LOGPS, beta=BETA)
    torch.testing.assert_close(robust.losses, sigmoid.losses, rtol=0, atol=0)


def test_robust_rejects_half_smoothing():
    with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
        robust_loss(*LOGPS, beta=BETA, label_smoothing=0.5)


def test_low_precision_inputs_computed_in_float32():
    out = sigmoid_loss(*(t.to(torch.bfloat16) for t in LOGPS), beta=BETA)
    assert out.losses.dtype == torch.float32
    # these inputs are exact in bfloat16, so the float32 result is the hand value
    assert_close(out.losses[:1], [math.log(1 + math.exp(-0.5))])


def test_dispatcher_matches_each_function():
    lengths = dict(chosen_lengths=CHOSEN_LENGTHS, rejected_lengths=REJECTED_LENGTHS)
    direct = {
        "sigmoid": sigmoid_loss(*LOGPS, beta=BETA, label_smoothing=0.1),
        "robust": robust_loss(*LOGPS, beta=BETA, label_smoothing=0.1),
        "ipo": ipo_loss(*LOGPS, beta=BETA, **lengths),
        "hinge": hinge_loss(*LOGPS, beta=BETA),
        "simpo": simpo_loss(
            POLICY_CHOSEN, POLICY_REJECTED, beta=BETA, gamma=0.3, label_smoothing=0.1, **lengths
        ),
    }
    assert set(direct) == set(LOSS_TYPES)
    for loss_type, expected in direct.items():
        out = preference_loss(
            DPOLoss(loss_type), *LOGPS, beta=BETA, label_smoothing=0.1, simpo_gamma=0.3, **lengths
        )
        for actual, wanted in zip(out, expected, strict=True):
            torch.testing.assert_close(actual, wanted, rtol=0, atol=0)


def test_dispatcher_simpo_needs_no_reference():
    out = preference_loss(
        "simpo",
        POLICY_CHOSEN,
        POLICY_REJECTED,
        None,
        None,
        beta=2.0,
        chosen_lengths=CHOSEN_LENGTHS,
        rejected_lengths=REJECTED_LENGTHS,
    )
    # default gamma 0.5; pair 0: z = 2 * (-0.5 + 2) - 0.5 = 2.5
    assert out.losses[0].item() == pytest.approx(softplus(-2.5), abs=1e-6)


@pytest.mark.parametrize(
    ("loss_type", "reference", "lengths", "message"),
    [
        ("dpo", True, True, "unknown loss_type"),
        ("sigmoid", False, True, "needs reference log-probs"),
        ("hinge", False, False, "needs reference log-probs"),
        ("ipo", True, False, "needs chosen_lengths and rejected_lengths"),
        ("simpo", False, False, "needs chosen_lengths and rejected_lengths"),
    ],
)
def test_dispatcher_errors(loss_type, reference, lengths, message):
    refs = (REFERENCE_CHOSEN, REFERENCE_REJECTED) if reference else (None, None)
    kwargs = (
        dict(chosen_lengths=CHOSEN_LENGTHS, rejected_lengths=REJECTED_LENGTHS) if lengths else {}
    )
    with pytest.raises(ValueError, match=message):
        preference_loss(loss_type, POLICY_CHOSEN, POLICY_REJECTED, *refs, beta=BETA, **kwargs)


# ------------------------------------------------------------------------------ Bradley–Terry
RM_CHOSEN = torch.tensor([2.0, 0.5])
RM_REJECTED = torch.tensor([1.0, 1.5])


def test_bradley_terry_hand_computed():
    # r_c - r_r = 1.0 and -1.0
    losses = bradley_terry_loss(RM_CHOSEN, RM_REJECTED)
    assert_close(losses, [math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(1.0))])


def test_bradley_terry_float_margin():
    losses = bradley_terry_loss(RM_CHOSEN, RM_REJECTED, margin=0.5)
    # 1.0 - 0.5 = 0.5 and -1.0 - 0.5 = -1.5
    assert_close(losses, [math.log(1 + math.exp(-0.5)), math.log(1 + math.exp(1.5))])


def test_bradley_terry_per_pair_margin():
    losses = bradley_terry_loss(RM_CHOSEN, RM_REJECTED, margin=torch.tensor([1.0, -1.0]))
    # 1.0 - 1.0 = 0 and -1.0 - (-1.0) = 0: both ln 2
    assert_close(losses, [math.log(2), math.log(2)])


def test_bradley_terry_centring():
    losses = bradley_terry_loss(RM_CHOSEN, RM_REJECTED, center_coef=0.1)
    # + 0.1 * (2.0 + 1.0)^2 = 0.9 and + 0.1 * (0.5 + 1.5)^2 = 0.4
    assert_close(losses, [math.log(1 + math.exp(-1.0)) + 0.9, math.log(1 + math.exp(1.0)) + 0.4])


def test_bradley_terry_gradient_separates_rewards():
    chosen = RM_CHOSEN.clone().requires_grad_()
    rejected = RM_REJECTED.clone().requires_grad_()
    bradley_terry_loss(chosen, rejected).sum().backward()
    # d/dr_c of -log sigma(d) = -sigma(-d), d = (1, -1)
    assert_close(chosen.grad, [-1 / (1 + math.exp(1.0)), -1 / (1 + math.exp(-1.0))])
    assert_close(rejected.grad, [1 / (1 + math.exp(1.0)), 1 / (1 + math.exp(-1.0))])
