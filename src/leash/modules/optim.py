"""AdamW and the warmup-then-decay learning-rate schedule every algorithm uses.

Every module has exactly one optimizer, the only layout Lightning's DeepSpeed strategy takes:
networks trained at different learning rates (PPO's policy and critic) are parameter groups of
it. AdamW updates each parameter from its own gradient and moments, so the groups step exactly
as separate optimizers at those learning rates would (``tests/modules/test_optim.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import torch

from leash.config import AlgoConfig, PPOConfig, Scheduler, optimizer_steps


def lr_multiplier(step: int, *, warmup_steps: int, max_steps: int, scheduler: Scheduler,
                  min_lr_ratio: float) -> float:
    """Factor applied to the peak lr at optimizer step ``step`` (0-based).

    Linear warmup over ``warmup_steps`` (step 0 already trains at ``1/warmup_steps``), then
    constant, linear or cosine decay that reaches ``min_lr_ratio`` at ``max_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == Scheduler.constant:
        return 1.0
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if scheduler == Scheduler.linear:
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def adamw_with_schedule(groups: list[dict[str, Any]], algo: AlgoConfig) -> dict[str, Any]:
    """One AdamW over parameter ``groups`` (a group's own ``lr`` wins over ``algo.lr``) and a
    per-step LambdaLR over :func:`~leash.config.optimizer_steps`, in Lightning's dict form."""
    optimizer = torch.optim.AdamW(
        groups, lr=algo.lr, betas=tuple(algo.adam_betas), weight_decay=algo.weight_decay
    )
    multiplier = functools.partial(
        lr_multiplier,
        warmup_steps=algo.warmup_steps,
        max_steps=optimizer_steps(algo),
        scheduler=algo.scheduler,
        min_lr_ratio=algo.min_lr_ratio,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def build_optimizer(params: Iterable[torch.nn.Parameter], algo: AlgoConfig) -> dict[str, Any]:
    """AdamW over the trainable ``params`` at ``algo.lr`` plus the per-step schedule."""
    return adamw_with_schedule([{"params": [p for p in params if p.requires_grad]}], algo)


def policy_critic_groups(
    policy: Iterable[torch.nn.Parameter],
    critic: Iterable[torch.nn.Parameter] | None,
    algo: PPOConfig,
) -> list[dict[str, Any]]:
    """The online loop's parameter groups: the policy at ``algo.lr`` and, unless ``critic`` is
    None (a critic-free estimator), the critic at ``algo.critic_lr``."""
    groups = [{"params": list(policy), "lr": algo.lr, "name": "policy"}]
    if critic is not None:
        groups.append({"params": list(critic), "lr": algo.critic_lr, "name": "critic"})
    return groups
