"""Epoch-level held-out figures over padded DDP shards: every row counted once."""

from __future__ import annotations

import torch

from leash.modules.epoch_metrics import gather_epoch


class TwoProcesses:
    """Stands in for a module under 2-process DDP: ``all_gather`` stacks this process's tensor
    over the other process's (given in the order they are gathered)."""

    def __init__(self, *other: torch.Tensor) -> None:
        self.other = list(other)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack([tensor, self.other.pop(0)])


def test_a_row_repeated_to_pad_a_shard_is_counted_once_in_row_order() -> None:
    # 5 rows over 2 processes: rank 0 takes rows 0, 2, 4; rank 1 rows 1, 3 and row 0 again (the
    # sampler pads its shard with the epoch's first row), in two validation steps each.
    rank_1 = (torch.tensor([11.0, 13.0, 10.0]), torch.tensor([1, 3, 0]))
    module = TwoProcesses(*rank_1)
    values = gather_epoch(
        module, [torch.tensor([10.0, 12.0]), torch.tensor([14.0])],
        [torch.tensor([0, 2]), torch.tensor([4])],
    )
    assert values.tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
