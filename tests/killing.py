"""Training runs that die like killed jobs, and runs forked from the test process (resume tests).

:class:`KillAtStep` is a `kill -9` from inside a training run, at a chosen step.

Added to a run as ``+callbacks.kill._target_=killing.KillAtStep +callbacks.kill.step=N`` with
``tests/`` on ``PYTHONPATH``: the process dies like a killed job, with no exception handling, no
teardown and no logger flush.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

import leash.cli
import leash.pipeline.recipes  # noqa: F401  (imported once here, not in every forked run)


class KillAtStep(Callback):
    """SIGKILL this process at the start of the first training step at or after ``step``
    optimizer steps (after any checkpoint taken there)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def forked_train(run_dir: Path, overrides: tuple[str, ...]) -> int:
    """``leash train <overrides>`` in a forked child; its exit status (-9 when killed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            log_path = run_dir.parent / f"{run_dir.name}.log"
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(log, 1)
            os.dup2(log, 2)
            sys.stdout = sys.stderr = open(log, "w", buffering=1, closefd=False)  # noqa: SIM115
            leash.cli.main(["train", *overrides, f"hydra.run.dir={run_dir}"])
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported through the exit status and the log
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
