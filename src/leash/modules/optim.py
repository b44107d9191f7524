"""AdamW and the warmup-then-decay learning-rate schedule every algorithm uses."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from leash.config import AlgoConfig, Scheduler


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


def build_optimizer(params: Iterable[torch.nn.Parameter], algo: AlgoConfig):
    """AdamW over the trainable ``params`` plus a per-step LambdaLR, in Lightning's dict form."""
    trainable = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=algo.lr, betas=tuple(algo.adam_betas), weight_decay=algo.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(
            step,
            warmup_steps=algo.warmup_steps,
            max_steps=algo.max_steps,
            scheduler=algo.scheduler,
            min_lr_ratio=algo.min_lr_ratio,
        ),
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
