"""Checkpoints a killed run resumes from exactly: the run that would have happened, bit for bit.

Lightning's ``ModelCheckpoint`` saves in ``on_train_batch_end``, before that step's metrics reach
the loggers and before a validation due at that step, and it leaves the random number generators
out: a resumed run then skips a validation, loses a log row and draws different samples.
:class:`ResumeCheckpoint` saves at the *start* of the next step instead, once everything the
finished step does (logging, validation, the scheduler step) has happened, with

- the RNG states of torch, CUDA, NumPy and Python (restored just before the first step after a
  resume, so nothing in between can draw from them);
- the loggers flushed, and the number of CSV rows then on disk: a resumed run cuts the file back
  to them (:mod:`leash.logging_csv`), so it holds every step once;
- the data position (the Trainer's loops, and :class:`leash.data.sampling.ResumableLoader`).

A checkpoint is written every ``every_n_train_steps`` optimizer steps and when training ends,
never on an exception: after a failure the file on disk is the last good state.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from leash.checkpoints import last_checkpoint_path
from leash.logging_csv import ResumableCSVLogger

STATE_KEY = "leash_resume"


def rng_states() -> dict[str, Any]:
    """Every global random number generator a training step may draw from, as tensors and
    plain values (a checkpoint must load with ``torch.load(weights_only=True)``)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` took."""
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def as_if_saved_at_batch_end(fit_loop: dict[str, Any], batches_per_epoch: int) -> None:
    """Make loop counters saved at the start of step k+1 read as Lightning's own restart logic
    expects them, from a save at the end of step k (``ModelCheckpoint``'s): step k+1's batch
    not yet fetched, step k not yet completed, its logged step not yet counted. Lightning then
    completes step k, skips a validation due there (ours already ran) and trains step k+1.

    When step k+1 opens an epoch, step k was the last of the previous one: the epoch counters
    go back one epoch and the batch counters read "last batch of that epoch, not completed"."""
    progress = fit_loop["epoch_loop.batch_progress"]
    current = progress["current"]
    if current["processed"] == 0:  # step k+1 is the first of its epoch
        for counts in fit_loop["epoch_progress"].values():
            for name in ("ready", "started", "processed", "completed"):
                counts[name] -= 1
        current.update(ready=batches_per_epoch, started=batches_per_epoch,
                       processed=batches_per_epoch, completed=batches_per_epoch)
        progress["is_last_batch"] = True
    for counts in (progress["total"], current):
        counts["ready"] = counts["started"]
        counts["completed"] -= 1
    fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1


class ResumeCheckpoint(Callback):
    """``<output_dir>/checkpoints/last.ckpt`` every ``every_n_train_steps`` optimizer steps and
    at the end of training, taken between steps (see the module docstring)."""

    def __init__(self, output_dir: str, every_n_train_steps: int) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        self.path = last_checkpoint_path(output_dir)
        self.every = every_n_train_steps
        self._saved_at = -1
        self._between_steps = False  # saving from on_train_batch_start
        self._restored: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return STATE_KEY

    def save(self, trainer: L.Trainer, between_steps: bool) -> None:
        """Flush the loggers, then write the checkpoint (every rank takes part; rank 0 writes)."""
        for logger in trainer.loggers:
            logger.save()
        self._between_steps = between_steps
        try:
            trainer.save_checkpoint(self.path)
        finally:
            self._between_steps = False
        self._saved_at = trainer.global_step

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._restored is not None:  # the first step after a resume
            set_rng_states(self._restored["rng"])
            self._restored = None
            self._saved_at = trainer.global_step
            return
        step = trainer.global_step
        if step > 0 and step % self.every == 0 and step != self._saved_at:
            self.save(trainer, between_steps=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._saved_at:
            self.save(trainer, between_steps=False)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[STATE_KEY] = {"rng": rng_states(), "csv_rows": _csv_rows(trainer)}
        if self._between_steps:
            as_if_saved_at_batch_end(
                checkpoint["loops"]["fit_loop"], int(trainer.num_training_batches)
            )

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._restored = checkpoint.get(STATE_KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is None:
            return
        for logger, rows in zip(_csv_loggers(trainer), self._restored["csv_rows"], strict=True):
            logger.experiment.keep_rows(rows)


def _csv_loggers(trainer: L.Trainer) -> list[ResumableCSVLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, ResumableCSVLogger)]


def _csv_rows(trainer: L.Trainer) -> list[int]:
    """Rows on disk in each resumable CSV log (rank 0, which writes them and the checkpoint)."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment.rows_written for logger in _csv_loggers(trainer)]

