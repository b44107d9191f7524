"""Hand-computed checks of the PPO-RLHF maths in leash.losses.ppo and leash.losses.kl."""

from __future__ import annotations

import math

import pytest
import torch

from leash.losses.kl import (
    AdaptiveKLController,
    FixedKLController,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_penalty,
)
from leash.losses.ppo import (
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    masked_mean,
    masked_var,
    masked_whiten,
    penalise_missing_eos,
    shape_rewards,
)

NAN = float("nan")
INF = float("inf")


def _close(actual: torch.Tensor, expected: list | float, atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), atol=atol, rtol=0)


# ------------------------------------------------------------------------ masked statistics
# Masked-in values 1, 2, 3 (row 0) and 4 (row 1); the rest is padding holding junk.
VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, NAN, INF]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_masked_mean_ignores_padding_even_when_it_is_nan_or_inf() -> None:
    # (1 + 2 + 3 + 4) / 4 = 2.5
    _close(masked_mean(VALUES, MASK), 2.5)
    # per row: (1 + 2 + 3) / 3 = 2; 4 / 1 = 4
    _close(masked_mean(VALUES, MASK, dim=1), [2.0, 4.0])
    # a bool mask means the same thing
    _close(masked_mean(VALUES, MASK.bool()), 2.5)


def test_masked_mean_of_an_empty_row_is_zero() -> None:
    mask = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    # row 0: (1 + 2 + 3) / 3 = 2; row 1 has nothing: 0 rather than NaN
    _close(masked_mean(VALUES, mask, dim=1), [2.0, 0.0])


def test_masked_var_biased_and_unbiased() -> None:
    # mean 2.5; deviations -1.5, -0.5, 0.5, 1.5; squares 2.25 + 0.25 + 0.25 + 2.25 = 5
    _close(masked_var(VALUES, MASK, unbiased=False), 5.0 / 4.0)  # = 1.25
    _close(masked_var(VALUES, MASK), 5.0 / 3.0)  # Bessel: 5 / (4 - 1)


def test_unbiased_masked_var_of_one_value_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(VALUES, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_masked_whiten_has_mean_zero_and_var_one_over_the_mask() -> None:
    whitened = masked_whiten(VALUES, MASK)
    # (v - 2.5) / sqrt(5/3), sqrt(5/3) = 1.2909944: 1.5 / 1.2909944 = 1.1618950,
    # 0.5 / 1.2909944 = 0.3872983; padding is set to 0
    _close(whitened, [[-1.1618950, -0.3872983, 0.3872983], [1.1618950, 0.0, 0.0]])
    _close(masked_mean(whitened, MASK), 0.0)
    _close(masked_var(whitened, MASK), 1.0)


def test_masked_whiten_without_mean_shift_keeps_the_mean() -> None:
    whitened = masked_whiten(VALUES, MASK, shift_mean=False)
    # same spread, mean 2.5 added back: -1.1618950 + 2.5 = 1.3381050
    _close(whitened[0, 0], 1.3381050)
    _close(masked_mean(whitened, MASK), 2.5)
    _close(whitened[1, 1:], [0.0, 0.0])


# ---------------------------------------------------------------------------- KL estimators
# token 0: policy 0.5, reference 0.25; token 1: policy 0.25, reference 0.5
LOGP = torch.tensor([[math.log(0.5), math.log(0.25)]])
REF_LOGP = torch.tensor([[math.log(0.25), math.log(0.5)]])
LN2 = math.log(2.0)  # 0.6931472


def test_kl_k1_is_the_log_ratio_and_can_be_negative() -> None:
    # log 0.5 - log 0.25 = ln 2; log 0.25 - log 0.5 = -ln 2
    _close(kl_k1(LOGP, REF_LOGP), [[LN2, -LN2]])
    assert kl_k1(LOGP, REF_LOGP)[0, 1] < 0


def test_kl_k2_is_half_the_squared_log_ratio() -> None:
    # 0.5 * (ln 2)^2 = 0.5 * 0.4804530 = 0.2402265 for both tokens
    _close(kl_k2(LOGP, REF_LOGP), [[0.2402265, 0.2402265]])


def test_kl_k3_on_hand_values() -> None:
    # d = ref - logp. token 0: d = -ln 2, e^d = 0.5: 0.5 - 1 + ln 2 = 0.1931472
    # token 1: d = ln 2, e^d = 2: 2 - 1 - ln 2 = 0.3068528
    _close(kl_k3(LOGP, REF_LOGP), [[0.1931472, 0.3068528]])


def test_kl_k3_is_never_negative() -> None:
    generator = torch.Generator().manual_seed(0)
    logp = -3.0 * torch.rand(64, 32, generator=generator)
    ref_logp = -3.0 * torch.rand(64, 32, generator=generator)
    assert (kl_k3(logp, ref_logp) >= 0).all()


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_every_estimator_is_zero_when_policy_equals_reference(estimator: str) -> None:
    assert torch.equal(kl_penalty(LOGP, LOGP, estimator), torch.zeros_like(LOGP))


def test_kl_penalty_selects_by_name_and_refuses_unknown_names() -> None:
    assert torch.equal(kl_penalty(LOGP, REF_LOGP, "k1"), kl_k1(LOGP, REF_LOGP))
    assert torch.equal(kl_penalty(LOGP, REF_LOGP, "k2"), kl_k2(LOGP, REF_LOGP))
    assert torch.equal(kl_penalty(LOGP, REF_LOGP, "k3"), kl_k3(LOGP, REF_LOGP))
    with pytest.raises(ValueError, match="k4"):
        kl_penalty(LOGP, REF_LOGP, "k4")


# --------------------------------------------------------------------------- reward shaping
# row 0: EOS at position 2, then padding; row 1: no EOS, cut at full length;
# row 2: degenerate empty response (nothing masked in).
SCORES = torch.tensor([2.0, 1.0, 5.0])
SHAPING_KL = torch.tensor([[1.0, 2.0, 3.0, 40.0], [1.0, -1.0, 2.0, 4.0], [9.0, 9.0, 9.0, 9.0]])
SHAPING_MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
EOS_FOUND = torch.tensor([True, False, False])


def test_kl_part_is_minus_coef_times_kl_on_real_tokens_only() -> None:
    shaped = shape_rewards(SCORES, SHAPING_KL, SHAPING_MASK, 0.1, None, EOS_FOUND)
    # -0.1 * kl; row 0's padding (kl 40) and all of row 2 get 0
    expected = [[-0.1, -0.2, -0.3, 0.0], [-0.1, 0.1, -0.2, -0.4], [0.0, 0.0, 0.0, 0.0]]
    _close(shaped.non_score_reward, expected)


def test_score_lands_on_eos_or_last_token_never_on_padding() -> None:
    shaped = shape_rewards(SCORES, SHAPING_KL, SHAPING_MASK, 0.1, None, EOS_FOUND)
    # row 0: score 2 on the EOS (position 2): -0.3 + 2 = 1.7; padding stays 0
    # row 1: no EOS, score 1 on the last token (position 3): -0.4 + 1 = 0.6
    # row 2: no real token, so no reward anywhere
    expected = [[-0.1, -0.2, 1.7, 0.0], [-0.1, 0.1, -0.2, 0.6], [0.0, 0.0, 0.0, 0.0]]
    _close(shaped.rewards, expected)
    _close(shaped.penalised_scores, [2.0, 1.0, 5.0])


def test_missing_eos_penalty_is_applied_once_per_response() -> None:
    shaped = shape_rewards(SCORES, SHAPING_KL, SHAPING_MASK, 0.1, 3.0, EOS_FOUND)
    # rows 1 and 2 have no EOS: 1 - 3 = -2 and 5 - 3 = 2; row 0 keeps 2
    _close(shaped.penalised_scores, [2.0, -2.0, 2.0])
    # row 1: the penalised score -2 only on the last token: -0.4 - 2 = -2.4
    _close(shaped.rewards[1], [-0.1, 0.1, -0.2, -2.4])
    # once, not per token: row 1's rewards minus its KL part sum to 1 - 3 = -2 (not 1 - 4*3)
    _close((shaped.rewards - shaped.non_score_reward)[1].sum(), -2.0)


# -------------------------------------------------------------------------------------- GAE
def test_gae_on_three_tokens_with_gamma_and_lambda_below_one() -> None:
    gamma, lam = 0.9, 0.5  # gamma * lam = 0.45
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    # delta_2 = 2 + 0.9*0 - 1.5 = 0.5          (V past the last token is 0)
    # delta_1 = 0 + 0.9*1.5 - 1.0 = 0.35
    # delta_0 = 1 + 0.9*1.0 - 0.5 = 1.4
    # A_2 = 0.5
    # A_1 = 0.35 + 0.45*0.5 = 0.575
    # A_0 = 1.4 + 0.45*0.575 = 1.4 + 0.25875 = 1.65875
    # returns = A + V = [2.15875, 1.575, 2.0]
    result = gae(rewards, values, torch.ones(1, 3), gamma, lam)
    _close(result.advantages, [[1.65875, 0.575, 0.5]])
    _close(result.returns, [[2.15875, 1.575, 2.0]])


def test_gae_treats_padding_as_the_end_and_gives_it_zero() -> None:
    gamma, lam = 0.9, 0.5
    # row 1 ends after two tokens; its padding holds a reward 99 and a value 7 to be ignored
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    # row 1: delta_1 = 2 + 0.9*0 - 1.0 = 1.0   (not 0.9*7: V past the last real token is 0)
    #        delta_0 = 1 + 0.9*1.0 - 0.5 = 1.4
    #        A_1 = 1.0; A_0 = 1.4 + 0.45*1.0 = 1.85; returns [2.35, 2.0]; padding 0
    result = gae(rewards, values, mask, gamma, lam)
    _close(result.advantages, [[1.65875, 0.575, 0.5], [1.85, 1.0, 0.0]])
    _close(result.returns, [[2.15875, 1.575, 2.0], [2.35, 2.0, 0.0]])


# ----------------------------------------------------------------------- clipped policy loss
def test_clipped_policy_loss_each_case_and_its_gradient() -> None:
    # epsilon 0.2, old_logp 0, so ratio = exp(logp). Per token, -A*rho vs -A*clip(rho):
    #   rho 1.1, A  2 (inside):                 -2.2 vs -2.2       -> -2.2, not clipped
    #   rho 1.5, A  2 (above 1+eps, clipped):   -3.0 vs -2*1.2=-2.4 -> -2.4, clipped
    #   rho 0.5, A -2 (below 1-eps, clipped):    1.0 vs  2*0.8=1.6  ->  1.6, clipped
    #   rho 1.5, A -2 (pessimistic, unclipped):  3.0 vs  2*1.2=2.4  ->  3.0, not clipped
    #   rho 0.5, A  2 (pessimistic, unclipped): -1.0 vs -2*0.8=-1.6 -> -1.0, not clipped
    #   padding (rho e^5, A 100) is ignored
    ratios = torch.tensor([[1.1, 1.5, 0.5, 1.5, 0.5, math.exp(5.0)]])
    logp = ratios.log().requires_grad_()
    advantages = torch.tensor([[2.0, 2.0, -2.0, -2.0, 2.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    out = clipped_policy_loss(logp, torch.zeros(1, 6), advantages, mask, 0.2)
    _close(out.loss, (-2.2 - 2.4 + 1.6 + 3.0 - 1.0) / 5)  # = -1.0 / 5 = -0.2
    _close(out.clipfrac, 2 / 5)
    _close(out.ratio_mean, (1.1 + 1.5 + 0.5 + 1.5 + 0.5) / 5)  # = 5.1 / 5 = 1.02
    out.loss.backward()
    # d(-A*rho)/dlogp = -A*rho on unclipped tokens, 0 on clipped ones; / 5 tokens:
    # -2.2/5 = -0.44, 0, 0, 3.0/5 = 0.6, -1.0/5 = -0.2, padding 0
    _close(logp.grad, [[-0.44, 0.0, 0.0, 0.6, -0.2, 0.0]])


def test_policy_equal_to_old_policy_gives_ratio_one_and_zero_approxkl() -> None:
    logp = torch.tensor([[-1.3, -0.2, -2.7]])
    advantages = torch.tensor([[1.0, -3.0, 0.5]])
    out = clipped_policy_loss(logp, logp.clone(), advantages, torch.ones(1, 3), 0.2)
    assert out.ratio_mean.item() == 1.0
    assert out.approxkl.item() == 0.0
    assert out.clipfrac.item() == 0.0
    _close(out.loss, -(1.0 - 3.0 + 0.5) / 3)  # -mean(A) = 1.5 / 3 = 0.5


def test_approxkl_is_the_k2_estimate_over_real_tokens() -> None:
    # logp - old_logp = 0.2 and -0.4 on real tokens: 0.5 * (0.04 + 0.16) / 2 = 0.05
    logp = torch.tensor([[0.2, -0.4, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    out = clipped_policy_loss(logp, torch.zeros(1, 3), torch.ones(1, 3), mask, 0.2)
    _close(out.approxkl, 0.05)


# ------------------------------------------------------------------------ clipped value loss
def test_clipped_value_loss_inside_and_outside_the_range() -> None:
    # epsilon 0.2, V_old 1.0, so clip(V) lies in [0.8, 1.2]. Per token, (V-R)^2 vs (clip(V)-R)^2:
    #   V 1.1, R 2 (inside):                      0.81 vs 0.81         -> 0.81, not clipped
    #   V 1.5, R 0 (outside, unclipped larger):   2.25 vs 1.2^2=1.44   -> 2.25, not clipped
    #   V 1.5, R 2 (outside, clipped larger):     0.25 vs 0.8^2=0.64   -> 0.64, clipped
    #   V 0.5, R 0 (below, clipped larger):       0.25 vs 0.8^2=0.64   -> 0.64, clipped
    #   padding ignored
    values = torch.tensor([[1.1, 1.5, 1.5, 0.5, 50.0]])
    returns = torch.tensor([[2.0, 0.0, 2.0, 0.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    out = clipped_value_loss(values, torch.ones(1, 5), returns, mask, 0.2)
    _close(out.loss, 0.5 * (0.81 + 2.25 + 0.64 + 0.64) / 4)  # = 0.5 * 4.34 / 4 = 0.5425
    _close(out.clipfrac, 2 / 4)


def test_clipped_value_loss_inside_the_range_is_plain_half_mse() -> None:
    # V - R = 0.1 and -0.1, no clip: 0.5 * (0.01 + 0.01) / 2 = 0.005
    out = clipped_value_loss(
        torch.tensor([[1.1, 0.9]]), torch.ones(1, 2), torch.ones(1, 2), torch.ones(1, 2), 0.2
    )
    _close(out.loss, 0.005)
    _close(out.clipfrac, 0.0)


def test_value_clip_fraction_counts_no_rounding_inside_the_range() -> None:
    # Inside the range V_old + (V - V_old) is V up to a rounding, which can make the "clipped"
    # error exceed the unclipped one by an ulp: the clip is not active there and must not count.
    generator = torch.Generator().manual_seed(0)
    values = 0.1 * torch.randn(64, 32, generator=generator)  # near 0: V - V_old rounds often
    old_values = values + 0.19 * (2 * torch.rand(64, 32, generator=generator) - 1)
    returns = torch.randn(64, 32, generator=generator)
    rounded_larger = (old_values + (values - old_values) - returns).square() > (
        values - returns).square()
    assert rounded_larger.float().mean() > 0.01, "no rounding here: the test would test nothing"
    out = clipped_value_loss(values, old_values, returns, torch.ones(64, 32), 0.2)
    assert out.clipfrac == 0.0


# ----------------------------------------------------------------------------------- entropy
def test_entropy_of_a_uniform_distribution_is_log_vocab() -> None:
    # any constant logits give the uniform distribution over 5 tokens: ln 5 = 1.6094379
    logits = torch.tensor([[[0.0] * 5, [1000.0] * 5]])
    _close(entropy_from_logits(logits), [[1.6094379, 1.6094379]])


def test_entropy_of_a_skewed_distribution_is_stable_for_large_logits() -> None:
    # logits (0, ln 3) give p = (0.25, 0.75):
    # H = 0.25*ln 4 + 0.75*ln(4/3) = 0.25*1.3862944 + 0.75*0.2876821 = 0.3465736 + 0.2157616
    #   = 0.5623351; shifting every logit by 1000 changes nothing
    logits = torch.tensor([[[0.0, math.log(3.0)], [1000.0, 1000.0 + math.log(3.0)]]])
    _close(entropy_from_logits(logits), [[0.5623351, 0.5623351]], atol=1e-4)


# ---------------------------------------------------------------------------- KL controllers
def test_fixed_kl_controller_never_moves() -> None:
    controller = FixedKLController(0.05)
    controller.update(current_kl=100.0, n_steps=512)
    assert controller.value == 0.05


@pytest.mark.parametrize(
    ("current_kl", "expected"),
    [
        # target 6, horizon 10000, 256 samples: mult = 1 + e * 256 / 10000 = 1 + 0.0256 * e
        (6.6, 0.1 * (1 + 0.1 * 0.0256)),  # e = 6.6/6 - 1 = 0.1 -> 0.100256
        (5.4, 0.1 * (1 - 0.1 * 0.0256)),  # e = 5.4/6 - 1 = -0.1 -> 0.099744
        (60.0, 0.1 * (1 + 0.2 * 0.0256)),  # e = 9 clipped to 0.2 -> 0.100512
        (0.0, 0.1 * (1 - 0.2 * 0.0256)),  # e = -1 clipped to -0.2 -> 0.099488
    ],
)
def test_adaptive_kl_controller_update(current_kl: float, expected: float) -> None:
    controller = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10000)
    controller.update(current_kl, n_steps=256)
    assert controller.value == pytest.approx(expected, rel=1e-9)


def test_adaptive_kl_controller_rejects_a_non_positive_target() -> None:
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(init_kl_coef=0.1, target=0.0, horizon=10000)


def test_the_missing_eos_penalty_lowers_only_the_cut_responses():
    scores = torch.tensor([1.0, 0.5, -2.0])
    ended = torch.tensor([True, False, False])
    # 1.0 ended: unchanged; 0.5 - 1.5 = -1.0; -2.0 - 1.5 = -3.5
    assert torch.equal(penalise_missing_eos(scores, ended, 1.5), torch.tensor([1.0, -1.0, -3.5]))
    assert penalise_missing_eos(scores, ended, None) is scores
