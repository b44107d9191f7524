"""A Lightning callback that prints the wall-clock time at which the first training step ends.

``benchmarks/startup.py`` adds it to a ``leash train`` run with
``+callbacks.first_step._target_=first_step.FirstStep`` (it puts ``benchmarks/`` on
``PYTHONPATH``) and reads the mark from the run's stderr.
"""

from __future__ import annotations

import sys
import time

import lightning

from common import FIRST_STEP_MARK


class FirstStep(lightning.Callback):
    """Print ``FIRST_STEP_MARK <time.time()>`` to stderr once, at the first
    ``on_train_batch_end``."""

    def __init__(self) -> None:
        self.seen = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.seen:
            self.seen = True
            print(f"{FIRST_STEP_MARK}{time.time()!r}", file=sys.stderr, flush=True)
