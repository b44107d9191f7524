"""What a run's numbers depend on besides its config: threads, versions, device.

On CPU the same config and seed give bit-identical metrics only at the same torch thread count
(a reduction split over more threads adds in another order), so every run records the count
with the library versions and the device in ``metrics.json`` (``runtime``), ``threads=N`` fixes
it, and ``leash compare`` gives every stage the same one.

Processes (DDP on CPU): unless ``$OMP_NUM_THREADS`` is set, Lightning's launchers give each of
N processes CPUs / N threads (at least 1), so that they do not oversubscribe the cores; a
``threads=`` of the run wins over that default (it is written to ``$OMP_NUM_THREADS``, which
those launchers leave alone and which the other processes inherit).

Random state: Lightning's DDP strategies re-seed every process with the run's seed when they set
it up, after the models are built, so what building them drew (a fresh value head, a LoRA
init) is forgotten; :class:`SeedAtSetup` does the same in a single process, so one process and
N train from the same random state (tests/e2e/test_ddp_parity.py).
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.callbacks import Callback

VERSIONED = ("torch", "lightning", "transformers", "leash")
"""Packages whose versions a run records."""


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch intra-op threads in this process and in the processes it starts
    (None keeps the default: torch's, or under DDP Lightning's, see the module docstring)."""
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


class SeedAtSetup(Callback):
    """Re-seed this process with the run's seed (``seed_everything``'s) as training or
    validation is set up; a resumed run then restores the checkpoint's generators."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        reset_seed()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def runtime_record(device: torch.device) -> dict:
    """The thread counts, versions, device and determinism setting of this process."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "device_name": name or platform.machine(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "python": platform.python_version(),
        "versions": {package: _version(package) for package in VERSIONED},
    }
