"""How far a run is, for a person and for a parent process.

:class:`RunProgressBar` is the console's bar: Lightning's RichProgressBar labels its bar
``Epoch 3/-2`` when a run is bounded by steps (``max_epochs=-1``, as every leash run is), and
with ``leave=True`` prints a new line per epoch: sixty lines for a default PPO run, whose epochs
are one batch each. This bar is reset in place every epoch and names the run's step budget.

:class:`ProgressFile` leaves the same facts in ``<run>/progress.json`` (step, step budget,
seconds since the end of the first step, the headline metric), rewritten atomically at most every
``every_s`` seconds: ``leash compare`` reads it to draw its stage board while the stage's own
log goes to a file.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar

from leash.atomic import write_json_atomic

PROGRESS_FILE = "progress.json"

HEADLINE_METRICS = ("train/objective/rlhf_reward", "train/loss")
"""The metric a progress line shows, the first one a run logs: the shaped reward the online
methods maximise, else the training loss."""


class RunProgressBar(RichProgressBar):
    """RichProgressBar labelled ``Epoch N (run: M steps)`` (``Epoch N/E`` when the run is
    bounded by epochs), one line reset in place every epoch."""

    def __init__(self, **kwargs) -> None:
        super().__init__(leave=False, **kwargs)

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            label = f"Epoch {current_epoch}/{trainer.max_epochs - 1}"
        else:
            label = f"Epoch {current_epoch} (run: {trainer.max_steps} steps)"
        return f"{label:{len(self.validation_description)}}"


class ProgressFile(Callback):
    """Writes ``<output_dir>/progress.json`` on the main process while the run trains."""

    def __init__(self, output_dir: str, every_s: float = 0.5) -> None:
        self.path = Path(output_dir) / PROGRESS_FILE
        self.every_s = every_s
        self._started: float | None = None
        self._started_step = 0
        self._written = -math.inf

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        now = time.perf_counter()
        if self._started is None:  # the clock starts at the end of the first step
            self._started, self._started_step = now, trainer.global_step
        if now - self._written >= self.every_s:
            self._write(trainer, now)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, time.perf_counter(), finished=True)

    def _write(self, trainer: Trainer, now: float, finished: bool = False) -> None:
        if not trainer.is_global_zero:
            return
        self._written = now
        metric = next((m for m in HEADLINE_METRICS if m in trainer.callback_metrics), None)
        value = None if metric is None else float(trainer.callback_metrics[metric])
        write_json_atomic(self.path, {
            "step": trainer.global_step,
            "max_steps": trainer.max_steps,
            "timed_from_step": self._started_step,
            "elapsed_s": 0.0 if self._started is None else now - self._started,
            "metric": metric,
            "value": value if value is None or math.isfinite(value) else None,
            "finished": finished,
        })
