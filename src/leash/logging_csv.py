"""Lightning's CSV logger, continuing its file when a killed run resumes.

Lightning's writer deletes ``metrics.csv`` when it starts, so a resumed run would lose the
history before the kill. This writer keeps the file of a run that resumes, counts its rows, and
cuts it back to the rows that were on disk at the checkpoint (the count that
:class:`leash.callbacks.resume.ResumeCheckpoint` records): the steps after the checkpoint are
trained again and logged once, and the file ends holding every step exactly once.

Every row also carries :data:`ELAPSED_COLUMN`, the wall time since the logger started, so a
report can draw training curves against time as well as against the step; a resumed run
continues from the last kept row's value (the time lost to the kill is not counted).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from leash.atomic import atomic_path
from leash.checkpoints import resume_checkpoint

ELAPSED_COLUMN = "time/elapsed_s"
"""Seconds of wall time from the logger's start to the row; a resumed run continues the count."""


class _ContinuingWriter(ExperimentWriter):
    """A metrics writer that keeps an existing ``metrics.csv`` and knows how many rows it has."""

    def __init__(self, log_dir: str, keep: bool) -> None:
        self.keep = keep  # read by _check_log_dir_exists, which the base __init__ calls
        super().__init__(log_dir)
        self.rows_written = 0
        self.started = time.monotonic()
        self.elapsed_before = 0.0
        if keep and os.path.isfile(self.metrics_file_path):
            self.metrics_keys, rows = _read_rows(self.metrics_file_path)
            self.rows_written = len(rows)
            self.elapsed_before = _last_elapsed(rows)

    def _check_log_dir_exists(self) -> None:
        if not self.keep:  # a fresh run: Lightning's warning and cleanup
            super()._check_log_dir_exists()

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        elapsed = self.elapsed_before + time.monotonic() - self.started
        super().log_metrics({**metrics_dict, ELAPSED_COLUMN: elapsed}, step)

    def save(self) -> None:
        self.rows_written += len(self.metrics)
        super().save()

    def keep_rows(self, count: int) -> None:
        """Cut the file back to its first ``count`` rows (the rest are logged again)."""
        if not os.path.isfile(self.metrics_file_path):
            return
        fieldnames, rows = _read_rows(self.metrics_file_path)
        with atomic_path(Path(self.metrics_file_path)) as tmp:
            _write_rows(tmp, fieldnames, rows[:count])
        self.rows_written = min(count, len(rows))
        self.elapsed_before = _last_elapsed(rows[:count])
        self.started = time.monotonic()


def _read_rows(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file."""
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def _last_elapsed(rows: list[dict[str, str]]) -> float:
    """The last :data:`ELAPSED_COLUMN` value among ``rows`` (0 when none has one)."""
    values = [row[ELAPSED_COLUMN] for row in rows if row.get(ELAPSED_COLUMN)]
    return float(values[-1]) if values else 0.0


def _write_rows(path: Path, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose file a resumed run continues (``resume`` as in ``TrainConfig``)."""

    def __init__(self, save_dir: str, name: str = "logs", version: str = "", resume: bool = True):
        super().__init__(save_dir, name=name, version=version)
        self.resumes = resume_checkpoint(save_dir, resume) is not None

    @property
    @rank_zero_experiment
    def experiment(self) -> _ContinuingWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, keep=self.resumes)
        return self._experiment
