"""The one launcher of child ``leash train`` processes (upstream stages, comparison stages).

Each stage runs in its own process: the same code path as a user's own run, and a peak-memory
measurement that is the stage's own. A child dies with its parent (on Linux, through the
parent-death signal), so a killed ``leash train`` or ``leash compare`` never leaves a stage
training on in its folder; the rerun resumes that stage from its last checkpoint.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal this process gets when its parent dies (linux/prctl.h)."""


def train_command(overrides: Sequence[str], run_dir: Path) -> list[str]:
    """``python -m leash train <overrides> hydra.run.dir=<run_dir>`` with this interpreter."""
    return [sys.executable, "-m", "leash", "train", *overrides, f"hydra.run.dir={run_dir}"]


def die_with(parent_pid: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child killed when ``parent_pid`` dies (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None

    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # the parent died before the signal was armed
            os._exit(1)

    return set_parent_death_signal


def run_train(overrides: Sequence[str], run_dir: Path) -> int:
    """Run one ``leash train`` child to the end, its output streamed live; its exit code."""
    command = train_command(overrides, run_dir)
    return subprocess.run(command, check=False, preexec_fn=die_with(os.getpid())).returncode
