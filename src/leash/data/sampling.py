"""The train order: a pure function of (seed, epoch, process), resumable in the middle of an epoch.

One sampler for one process and for N: the epoch's global order is
``torch.randperm(rows, seed + epoch)`` (padded to a multiple of N by repeating its first rows, as
``DistributedSampler`` does), and process r takes positions r, r + N, ... of it. A batch of b
rows in one process and N batches of b / N rows, one per process, are then the same rows, and a
killed run that knows its epoch and how many batches it finished can restart exactly where it
stopped: :class:`ResumableLoader` stores both in the checkpoint through Lightning's stateful
dataloader interface (``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class ResumableSampler(Sampler[int]):
    """This process's rows of the current epoch, in the seeded order, from a resume point."""

    def __init__(
        self, num_rows: int, shuffle: bool, seed: int, num_replicas: int = 1, rank: int = 0
    ) -> None:
        self.num_rows, self.shuffle, self.seed = num_rows, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self.skip = 0  # rows of the current epoch already trained on (set on resume)

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this at the start of every epoch."""
        self.epoch = epoch

    def resume(self, epoch: int, rows_done: int) -> None:
        """Start the next iteration at row ``rows_done`` of ``epoch``."""
        self.epoch, self.skip = epoch, rows_done

    def epoch_order(self, epoch: int) -> list[int]:
        """This process's rows of ``epoch``, in order."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.num_rows, generator=generator).tolist()
        else:
            order = list(range(self.num_rows))
        padded = len(self) * self.num_replicas
        order += order[: padded - len(order)]
        return order[self.rank : padded : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        order, self.skip = self.epoch_order(self.epoch)[self.skip :], 0
        return iter(order)

    def __len__(self) -> int:
        return math.ceil(self.num_rows / self.num_replicas)


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` whose position Lightning checkpoints.

    ``batches_done`` reports how many of this epoch's batches training has finished (the
    Trainer's own count: the loader's iterator runs ahead of training by its prefetch).
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = batches_done

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume after the last finished batch; after an epoch's last one, at the next epoch."""
        epoch, done = state["epoch"], state["batches_done"]
        if done >= len(self):
            epoch, done = epoch + 1, 0
        self.sampler.resume(epoch, done * self.batch_size)
