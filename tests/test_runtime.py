"""Torch threads per process: ``threads=`` wins, and DDP on CPU splits the CPUs by default."""

from __future__ import annotations

import os

import pytest
import torch
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed

from leash.runtime import set_threads


@pytest.fixture
def threads_restored(monkeypatch: pytest.MonkeyPatch):
    """No $OMP_NUM_THREADS during the test; this process's thread count and variable after."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_of_a_run_survive_the_ddp_launchers_default(threads_restored) -> None:
    set_threads(3)
    _set_num_threads_if_needed(num_processes=2)  # what Lightning's DDP launchers call
    assert torch.get_num_threads() == 3
    assert os.environ["OMP_NUM_THREADS"] == "3"  # inherited by the processes the run starts


def test_without_threads_each_ddp_process_gets_its_share_of_the_cpus(threads_restored) -> None:
    set_threads(None)
    assert "OMP_NUM_THREADS" not in os.environ
    _set_num_threads_if_needed(num_processes=2)
    assert torch.get_num_threads() == max(1, len(os.sched_getaffinity(0)) // 2)
