"""Hand-computed checks of the critic-free estimators (leash.losses.advantages), the token
averages of the policy loss (aggregate_tokens) and GRPO's loss (leash.losses.grpo)."""

from __future__ import annotations

import math

import pytest
import torch

from leash.losses.advantages import (
    MovingAverageBaseline,
    grpo_advantages,
    per_token,
    reinforce_advantages,
    rloo_advantages,
    sequence_rewards,
)
from leash.losses.grpo import grpo_loss
from leash.losses.ppo import aggregate_tokens, clipped_policy_loss

NAN = float("nan")
INF = float("inf")


def _close(actual: torch.Tensor, expected: list | float, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), atol=atol, rtol=0)


# ------------------------------------------------------------------------- sequence rewards
def test_sequence_reward_subtracts_the_summed_kl_of_real_tokens_only() -> None:
    scores = torch.tensor([1.0, 3.0])
    kl = torch.tensor([[0.2, -0.5, 9.0], [0.1, 0.1, 0.0]])  # row 0's last token is padding
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    # row 0: sum kl = 0.2 - 0.5 = -0.3 (9 ignored): 1 - 0.1 * (-0.3) = 1.03
    # row 1: sum kl = 0.1 + 0.1 + 0 = 0.2:          3 - 0.1 * 0.2 = 2.98
    _close(sequence_rewards(scores, kl, mask, 0.1), [1.03, 2.98])
    _close(sequence_rewards(scores, kl, mask, 0.0), [1.0, 3.0])


# ------------------------------------------------------------------------------------- RLOO
def test_rloo_baseline_is_the_mean_of_the_other_samples_of_the_prompt() -> None:
    # two prompts, k = 3 samples each, adjacent: (1, 2, 6) and (3, 5, 7)
    rewards = torch.tensor([1.0, 2.0, 6.0, 3.0, 5.0, 7.0])
    # prompt 0, sum 9: baselines (9-1)/2 = 4, (9-2)/2 = 3.5, (9-6)/2 = 1.5
    #   advantages 1-4 = -3, 2-3.5 = -1.5, 6-1.5 = 4.5
    # prompt 1, sum 15: baselines 6, 5, 4; advantages -3, 0, 3
    # (= k/(k-1) x (R - group mean): 1.5 x (1-3) = -3, ...)
    _close(rloo_advantages(rewards, 3), [-3.0, -1.5, 4.5, -3.0, 0.0, 3.0])


def test_rloo_with_two_samples_is_the_difference_of_the_pair() -> None:
    # k = 2: each baseline is the other sample: 1 - 4 = -3 and 4 - 1 = 3
    _close(rloo_advantages(torch.tensor([1.0, 4.0]), 2), [-3.0, 3.0])


@pytest.mark.parametrize("group_size", [1, 4])
def test_group_estimators_refuse_groups_that_do_not_fit(group_size: int) -> None:
    rewards = torch.arange(6.0)
    with pytest.raises(ValueError, match="groups of"):
        rloo_advantages(rewards, group_size)
    with pytest.raises(ValueError, match="groups of"):
        grpo_advantages(rewards, group_size)


# ------------------------------------------------------------------------------------- GRPO
def test_grpo_normalises_scores_within_each_group() -> None:
    scores = torch.tensor([1.0, 2.0, 6.0, 4.0, 4.0, 4.0])
    # group 0: mean 3, deviations -2, -1, 3; squares 4 + 1 + 9 = 14; unbiased var 14/2 = 7
    #   std sqrt(7) = 2.6457513; /(std + 1e-4 = 2.6458513):
    #   -2/2.6458513 = -0.7559004, -1/2.6458513 = -0.3779502, 3/2.6458513 = 1.1338506
    # group 1: all equal, std 0: 0 / 1e-4 = 0 (the eps keeps it finite)
    expected = [-0.7559004, -0.3779502, 1.1338506, 0.0, 0.0, 0.0]
    _close(grpo_advantages(scores, 3), expected)


def test_grpo_ignores_a_shift_of_a_groups_scores() -> None:
    scores = torch.tensor([0.5, -1.0, 2.0, 0.25])
    shifted = scores + torch.tensor([10.0, 10.0, -3.0, -3.0])
    torch.testing.assert_close(grpo_advantages(shifted, 2), grpo_advantages(scores, 2))


# -------------------------------------------------------------------------------- REINFORCE
def test_reinforce_subtracts_the_baseline() -> None:
    # 1.5 - 0.5 = 1, -0.5 - 0.5 = -1
    _close(reinforce_advantages(torch.tensor([1.5, -0.5]), 0.5), [1.0, -1.0])


def test_moving_average_baseline_starts_at_zero_and_follows_the_batch_mean() -> None:
    baseline = MovingAverageBaseline(0.9)
    assert baseline.value == 0.0
    baseline.update(2.0)  # 0.9 * 0 + 0.1 * 2 = 0.2
    assert baseline.value == pytest.approx(0.2, abs=1e-12)
    baseline.update(1.0)  # 0.9 * 0.2 + 0.1 * 1 = 0.18 + 0.1 = 0.28
    assert baseline.value == pytest.approx(0.28, abs=1e-12)
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(1.0)


def test_per_token_puts_the_sequence_advantage_on_real_tokens_only() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    _close(per_token(torch.tensor([2.0, -1.0]), mask), [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])


# --------------------------------------------------------------------------- token averages
# Masked-in losses 1, 2, 3 (row 0) and 4 (row 1); the rest is padding holding junk.
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, NAN, INF]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


def test_bnpo_is_the_token_mean() -> None:
    _close(aggregate_tokens(PER_TOKEN, MASK, "bnpo"), 2.5)  # (1 + 2 + 3 + 4) / 4


def test_grpo_loss_type_averages_sequences_first() -> None:
    # row means: (1 + 2 + 3) / 3 = 2 and 4 / 1 = 4; their mean (2 + 4) / 2 = 3
    _close(aggregate_tokens(PER_TOKEN, MASK, "grpo"), 3.0)


def test_dapo_divides_the_token_sum_by_the_tokens_per_update() -> None:
    # (1 + 2 + 3 + 4) / 5 = 2: the divisor is the rollout's, not this minibatch's 4 tokens
    _close(aggregate_tokens(PER_TOKEN, MASK, "dapo", tokens_per_update=5.0), 2.0)
    with pytest.raises(ValueError, match="tokens_per_update"):
        aggregate_tokens(PER_TOKEN, MASK, "dapo")
    with pytest.raises(ValueError, match="bogus"):
        aggregate_tokens(PER_TOKEN, MASK, "bogus")


def test_bnpo_equals_the_clipped_policy_loss_bit_for_bit() -> None:
    generator = torch.Generator().manual_seed(0)
    logp, old = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    advantages = torch.randn(4, 5, generator=generator)
    mask = (torch.arange(5) < torch.tensor([[5], [3], [1], [4]])).float()
    out = clipped_policy_loss(logp, old, advantages, mask, 0.2)
    assert torch.equal(aggregate_tokens(out.per_token, mask, "bnpo"), out.loss)


# -------------------------------------------------------------------------------- GRPO loss
# token 0: policy 0.5, reference 0.25; token 1: policy 0.25, reference 0.5 (as in the k3 test)
LOGP = [[math.log(0.5), math.log(0.25)]]
REF_LOGP = torch.tensor([[math.log(0.25), math.log(0.5)]])


def test_grpo_loss_adds_beta_k3_per_token_and_its_gradient() -> None:
    logp = torch.tensor(LOGP, requires_grad=True)
    old = torch.tensor(LOGP)  # ratio 1: the surrogate is -A on every token, nothing clipped
    advantages, mask = torch.ones(1, 2), torch.ones(1, 2)
    out = grpo_loss(logp, old, REF_LOGP, advantages, mask, 0.2, 0.1, "bnpo")
    # k3: token 0, d = ref - logp = -ln 2: 0.5 - 1 + ln 2 = 0.1931472
    #     token 1, d = ln 2:                2 - 1 - ln 2 = 0.3068528
    # per token: -1 + 0.1 * 0.1931472 = -0.9806853, -1 + 0.1 * 0.3068528 = -0.9693147
    # token mean: (-2 + 0.1 * 0.5) / 2 = -1.95 / 2 = -0.975
    _close(out.per_token.detach(), [[-0.9806853, -0.9693147]])
    _close(out.loss.detach(), -0.975)
    assert out.ratio_mean.item() == 1.0 and out.clipfrac.item() == 0.0
    out.loss.backward()
    # d(-A rho)/dlogp = -1; d k3/dlogp = 1 - exp(d) = 1 - pi_ref/pi: 1 - 0.5 = 0.5, 1 - 2 = -1
    # gradient / 2 tokens: (-1 + 0.1 * 0.5) / 2 = -0.475, (-1 + 0.1 * -1) / 2 = -0.55
    _close(logp.grad, [[-0.475, -0.55]])


def test_grpo_loss_with_beta_zero_is_the_clipped_surrogate() -> None:
    logp = torch.tensor([[-0.2, -1.0, -0.7]])
    old, advantages = torch.tensor([[-0.5, -1.0, -0.1]]), torch.tensor([[1.0, -2.0, 0.5]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    plain = clipped_policy_loss(logp, old, advantages, mask, 0.2)
    out = grpo_loss(logp, old, REF_LOGP.repeat(1, 2)[:, :3], advantages, mask, 0.2, 0.0, "bnpo")
    torch.testing.assert_close(out.loss, plain.loss)
    # dapo over 4 rollout tokens per update: the masked sum over 4, not the minibatch's 2
    dapo = grpo_loss(logp, old, REF_LOGP.repeat(1, 2)[:, :3], advantages, mask, 0.2, 0.0,
                     "dapo", tokens_per_update=4.0)
    torch.testing.assert_close(dapo.loss, plain.loss * 2 / 4)
