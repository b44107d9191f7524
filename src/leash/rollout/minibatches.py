"""The minibatches of a PPO pass: shuffled over the whole rollout of every process.

Under DDP each process holds the rollout of its shard of the prompts: with the data module's
sampler, process ``r`` of ``W`` holds prompts ``r, r + W, r + 2W, ...`` of the global batch, each
prompt's ``samples_per_prompt`` rows adjacent. One process given the whole batch shuffles its
rows into minibatches; N processes must draw the *same* minibatches for the two runs to train
alike. So every process draws one permutation of the global rollout (from the global RNG, which
every process holds in the same state, as the draw one process makes) and takes, from each
minibatch, the rows it holds. The processes' shares of a minibatch then differ in size, and
may be empty: the losses weigh each process's part by its share
(:meth:`leash.modules.guard.GuardedModule.share_of_processes`).
"""

from __future__ import annotations

import torch


def process_minibatches(
    rows: int,
    num_minibatches: int,
    samples_per_prompt: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """This process's rows of each minibatch of one shuffled pass over the global rollout.

    In one process: ``torch.randperm(rows).split(rows // num_minibatches)``, the same draw.

    Args:
        rows: the rollout rows this process holds (every process holds as many).
        num_minibatches: minibatches per pass (they split the global rollout exactly).
        samples_per_prompt: adjacent rows per prompt.
        rank: this process.
        world_size: processes.
        device: where the permutation is drawn (the rollout's device).
    Returns:
        ``num_minibatches`` tensors of local row indices (possibly empty), in minibatch order.
    """
    total = rows * world_size
    order = torch.randperm(total, device=device)
    prompt, sample = order // samples_per_prompt, order % samples_per_prompt
    mine = prompt % world_size == rank
    local = (prompt // world_size) * samples_per_prompt + sample
    size = total // num_minibatches
    return [part[held] for part, held in zip(local.split(size), mine.split(size), strict=True)]
