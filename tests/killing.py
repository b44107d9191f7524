"""A `kill -9` from inside a training run, at a chosen step (for the resume tests).

Added to a run as ``+callbacks.kill._target_=killing.KillAtStep +callbacks.kill.step=N`` with
``tests/`` on ``PYTHONPATH``: the process dies like a killed job, with no exception handling, no
teardown and no logger flush.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """SIGKILL this process at the start of the first training step at or after ``step``
    optimizer steps (after any checkpoint taken there)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
