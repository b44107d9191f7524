"""The warmup + decay schedule, checked against hand-computed values, and the one-optimizer
layout of the online loop against two optimizers."""

from __future__ import annotations

import math

import pytest
import torch

from leash.config import PPOConfig, Scheduler
from leash.modules.optim import adamw_with_schedule, lr_multiplier, policy_critic_groups


def schedule(step, scheduler=Scheduler.cosine):
    return lr_multiplier(step, warmup_steps=4, max_steps=14, scheduler=scheduler, min_lr_ratio=0.1)


def test_warmup_is_linear_from_the_first_step():
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_cosine_decays_to_the_floor():
    assert schedule(4) == pytest.approx(1.0)
    # halfway through the 10 decay steps: 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert schedule(14) == pytest.approx(0.1)
    assert schedule(100) == pytest.approx(0.1)


def test_linear_and_constant():
    assert schedule(9, Scheduler.linear) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(9, Scheduler.constant) == 1.0


# ------------------------------------------------------------------------------------ layout
def _networks():
    """A tiny policy and critic with fixed weights (re-created identically on every call)."""
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2), torch.nn.Linear(3, 1)


def _loss(policy, critic, step):
    """A loss that reads both networks, different at every step."""
    inputs = torch.arange(6.0).reshape(2, 3) / (step + 1)
    return policy(inputs).pow(2).mean() + 0.1 * critic(inputs).sum()


def _train(optimizers, schedules, policy, critic, steps=3):
    for step in range(steps):
        for optimizer in optimizers:
            optimizer.zero_grad()
        _loss(policy, critic, step).backward()
        for optimizer, schedule in zip(optimizers, schedules, strict=True):
            optimizer.step()
            schedule.step()
    return [p.detach().clone() for p in (*policy.parameters(), *critic.parameters())]


ALGO = PPOConfig(lr=1e-2, critic_lr=3e-2, weight_decay=0.01, warmup_steps=1, max_steps=2,
                 ppo_epochs=1, num_minibatches=2)  # fmt: skip
"""4 optimizer steps of schedule: warmup, then cosine decay."""


def test_one_optimizer_with_two_groups_steps_like_two_optimizers():
    """PPO's one-optimizer layout (the one DeepSpeed takes) equals a policy optimizer at lr
    and a critic optimizer at critic_lr, bit for bit, schedule included."""
    policy, critic = _networks()
    one = adamw_with_schedule(policy_critic_groups(policy.parameters(), critic.parameters(),
                                                   ALGO), ALGO)  # fmt: skip
    grouped = _train([one["optimizer"]], [one["lr_scheduler"]["scheduler"]], policy, critic)

    policy, critic = _networks()
    two = [adamw_with_schedule([{"params": list(net.parameters()), "lr": lr}], ALGO)
           for net, lr in ((policy, ALGO.lr), (critic, ALGO.critic_lr))]  # fmt: skip
    separate = _train([t["optimizer"] for t in two],
                      [t["lr_scheduler"]["scheduler"] for t in two], policy, critic)  # fmt: skip

    assert all(torch.equal(a, b) for a, b in zip(grouped, separate, strict=True))
    initial = [p.detach() for p in (*_networks()[0].parameters(), *_networks()[1].parameters())]
    assert not any(torch.equal(a, b) for a, b in zip(grouped, initial, strict=True))
    # The critic group really trains at critic_lr: at the policy's lr it would differ.
    policy, critic = _networks()
    same_lr = adamw_with_schedule(
        policy_critic_groups(policy.parameters(), critic.parameters(),
                             PPOConfig(**{**vars(ALGO), "critic_lr": ALGO.lr})), ALGO,
    )  # fmt: skip
    slower = _train([same_lr["optimizer"]], [same_lr["lr_scheduler"]["scheduler"]],
                    policy, critic)  # fmt: skip
    assert torch.equal(slower[0], grouped[0]) and not torch.equal(slower[-1], grouped[-1])


def test_groups_follow_the_estimator():
    """A critic-free estimator has the policy group alone; the schedule spans every update."""
    policy, critic = _networks()
    groups = policy_critic_groups(policy.parameters(), None, ALGO)
    assert [(g["name"], g["lr"]) for g in groups] == [("policy", 1e-2)]
    both = policy_critic_groups(policy.parameters(), critic.parameters(), ALGO)
    assert [(g["name"], g["lr"]) for g in both] == [("policy", 1e-2), ("critic", 3e-2)]
    schedule = adamw_with_schedule(both, ALGO)["lr_scheduler"]["scheduler"]
    # 2 iterations x 1 epoch x 2 minibatches = 4 steps: warmup 1, then cosine to 0.1 at step 4.
    assert schedule.lr_lambdas[0].keywords["max_steps"] == 4
    assert [g["lr"] for g in schedule.optimizer.param_groups] == [1e-2, 3e-2]  # step 0: 1/1
