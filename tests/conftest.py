"""Shared fixtures: every test runs offline, with its own artifact cache and output folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite runs one pytest worker per core (pyproject's addopts), each starting `leash train`
# processes: one torch thread each, so the cores are never oversubscribed (OpenMP's spinning
# threads slow an oversubscribed run several-fold). A test that needs another count says so.
os.environ.setdefault("OMP_NUM_THREADS", "1")


# One torch thread in this process too: the resume and determinism tests fork it, which is only
# safe while it has never started an OpenMP thread pool (GNU OpenMP's pool does not survive a
# fork: the child hangs in its first parallel region); a forked run inherits the one thread
# unless it sets `threads=`.
torch.set_num_threads(1)


@pytest.fixture
def isolated_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache and output folder for CLI runs (environment variables read by conf/)."""
    monkeypatch.setenv("LEASH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LEASH_OUTPUT_DIR", str(tmp_path / "outputs"))
    return tmp_path
