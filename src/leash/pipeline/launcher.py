"""The one launcher of child ``leash train`` processes (upstream stages, comparison stages).

Each stage runs in its own process: the same code path as a user's own run, and a peak-memory
measurement that is the stage's own.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def train_command(overrides: Sequence[str], run_dir: Path) -> list[str]:
    """``python -m leash train <overrides> hydra.run.dir=<run_dir>`` with this interpreter."""
    return [sys.executable, "-m", "leash", "train", *overrides, f"hydra.run.dir={run_dir}"]


def run_train(overrides: Sequence[str], run_dir: Path) -> int:
    """Run one ``leash train`` child to the end, its output streamed live; its exit code."""
    return subprocess.run(train_command(overrides, run_dir), check=False).returncode
