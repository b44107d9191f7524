"""The one launcher of child ``leash train`` processes (upstream stages, comparison stages).

Each stage runs in its own process: the same code path as a user's own run, and a peak-memory
measurement that is the stage's own. A child dies with its parent (on Linux, through the
parent-death signal), so a killed ``leash train`` or ``leash compare`` never leaves a stage
training on in its folder; the rerun resumes that stage from its last checkpoint.

A child's output streams through live, or goes to a log file while the parent draws its own
view. When ``leash train`` ends on an expected error (a config or data error, a non-finite
quantity) it also leaves the message in ``<run>/error.txt`` (:func:`write_error`), so that a
parent can say it again as its own (:class:`StageFailed`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from leash.atomic import write_text_atomic

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal this process gets when its parent dies (linux/prctl.h)."""

ERROR_FILE = "error.txt"
"""Where in its run folder ``leash train`` leaves the message of the expected error it ended on."""


@dataclass(frozen=True)
class ChildExit:
    """How a ``leash train`` child ended."""

    code: int
    """Its exit status; a child killed by a signal has ``128 + signal``, as a shell reports."""
    error: str | None
    """The message of the expected error it ended on (:func:`write_error`), if it did."""


class StageFailed(RuntimeError):
    """An upstream stage's child failed; the message says which stage, where, and why."""

    def __init__(self, kind: str, run_dir: Path, child: ChildExit) -> None:
        why = child.error or f"exit status {child.code}; its log is in {run_dir}"
        super().__init__(f"the {kind} stage (run folder {run_dir}) failed: {why}")
        self.exit_code = child.code


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


def run_train(
    overrides: Sequence[str], run_dir: Path, log_file: Path | None = None
) -> ChildExit:
    """Run one ``leash train`` child to the end; how it ended.

    Its output streams live, or with ``log_file`` goes to that file (stdout and stderr, in
    order)."""
    error_file = Path(run_dir) / ERROR_FILE
    error_file.unlink(missing_ok=True)  # a message left by an earlier attempt is not this one's
    command = train_command(overrides, run_dir)
    with _output(log_file) as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if out else None,
                                 preexec_fn=die_with(os.getpid()))
        code = child.wait()
    code = code if code >= 0 else 128 - code  # killed by a signal: 128 + its number
    error = error_file.read_text().strip() if code and error_file.exists() else None
    return ChildExit(code, error)


@contextmanager
def _output(log_file: Path | None) -> Iterator[IO[bytes] | None]:
    """The open log file a child writes to (appending: a resumed stage keeps its first log),
    or None for the parent's own terminal."""
    if log_file is None:
        yield None
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as handle:
        yield handle


def write_error(run_dir: str | Path, message: str) -> None:
    """Leave the message of the error a run ends on in its folder, for the parent to say."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / ERROR_FILE, message + "\n")
