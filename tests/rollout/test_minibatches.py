"""Minibatches of the global rollout: one process draws what it always drew, and N processes
together draw the minibatches one process draws."""

from __future__ import annotations

import pytest
import torch

from leash.rollout.minibatches import process_minibatches


def test_one_process_draws_the_plain_shuffle() -> None:
    torch.manual_seed(3)
    expected = torch.randperm(24).split(6)
    torch.manual_seed(3)
    drawn = process_minibatches(24, 4, samples_per_prompt=2)
    assert len(drawn) == 4
    for mine, plain in zip(drawn, expected, strict=True):
        assert torch.equal(mine, plain)


@pytest.mark.parametrize(("world_size", "samples"), [(2, 2), (3, 1), (4, 4)])
def test_processes_together_draw_the_minibatches_of_one_process(world_size, samples) -> None:
    # Process r holds prompts r, r + W, ...; its local row j * S + s is global row
    # (j * W + r) * S + s, where one process given the whole batch holds it.
    local_rows = 4 * samples
    torch.manual_seed(7)
    one = process_minibatches(local_rows * world_size, 4, samples)
    parts = []
    for rank in range(world_size):  # every process's global RNG is in the same state
        torch.manual_seed(7)
        parts.append(process_minibatches(local_rows, 4, samples, rank, world_size))

    def global_row(local: int, rank: int) -> int:
        prompt, sample = divmod(local, samples)
        return (prompt * world_size + rank) * samples + sample

    for index, minibatch in enumerate(one):
        together = sorted(global_row(int(row), rank)
                          for rank in range(world_size) for row in parts[rank][index])
        assert together == sorted(minibatch.tolist())
    for rank in range(world_size):  # each process's pass covers each of its rows once
        assert sorted(torch.cat(parts[rank]).tolist()) == list(range(local_rows))
