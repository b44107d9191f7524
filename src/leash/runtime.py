"""What a run's numbers depend on besides its config: threads, versions, device.

On CPU the same config and seed give bit-identical metrics only at the same torch thread count
(a reduction split over more threads adds in another order), so every run records the count
with the library versions and the device in ``metrics.json`` (``runtime``), ``threads=N`` fixes
it, and ``leash compare`` gives every stage the same one.
"""

from __future__ import annotations

import platform
from importlib import metadata

import torch

VERSIONED = ("torch", "lightning", "transformers", "leash")
"""Packages whose versions a run records."""


def set_threads(threads: int | None) -> None:
    """Use ``threads`` torch intra-op threads in this process (None keeps torch's default)."""
    if threads is not None:
        torch.set_num_threads(threads)


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
