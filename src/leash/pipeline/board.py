"""``leash compare``'s live view: every stage with its state, the running one's progress.

Each stage writes its log to ``<run>/console.log`` and its progress to ``<run>/progress.json``
(:class:`~leash.callbacks.progress.ProgressFile`); the board reads the running stage's file
when it is drawn. A terminal sees it redrawn in place; a log file or a pipe gets one line
per stage as it ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from leash.callbacks.progress import PROGRESS_FILE

LOG_FILE = "console.log"
"""What a stage printed, in its run folder."""

BAR_WIDTH = 24
STATES = {"waiting": ("·", "dim"), "running": ("▸", "bold"), "finished": ("✓", "green"),
          "failed": ("✗", "red")}
SHORT_METRICS = {"train/objective/rlhf_reward": "reward", "train/loss": "loss"}


@dataclass
class StageRow:
    """One stage (of one seed) on the board."""

    label: str
    run_dir: Path
    state: str = "waiting"
    started: float | None = None
    seconds: float | None = None


def read_progress(run_dir: Path) -> dict | None:
    """The stage's last progress record, or None before its first training step."""
    try:
        return json.loads((run_dir / PROGRESS_FILE).read_text())
    except (OSError, ValueError):  # not written yet (or, on a foreign file system, half written)
        return None


def eta_seconds(progress: dict) -> float | None:
    """Seconds left at the rate since the first timed step, or None before a rate exists."""
    timed = progress["step"] - progress["timed_from_step"]
    if timed <= 0 or progress["elapsed_s"] <= 0:
        return None
    return (progress["max_steps"] - progress["step"]) * progress["elapsed_s"] / timed


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_cells(progress: dict | None, running_s: float) -> list[RenderableType]:
    """The running stage's bar and its text: ``step 120/200  0:14 left  loss 0.512``."""
    if progress is None or progress["max_steps"] <= 0:
        return [Text(f"starting ({clock(running_s)})", style="dim")]
    step, total = progress["step"], progress["max_steps"]
    parts = [f"step {step}/{total}"]
    eta = eta_seconds(progress)
    if eta is not None:
        parts.append(f"{clock(eta)} left")
    if progress.get("value") is not None:
        name = SHORT_METRICS.get(progress["metric"], progress["metric"])
        parts.append(f"{name} {progress['value']:.3f}")
    return [ProgressBar(total=total, completed=step, width=BAR_WIDTH), Text("  ".join(parts))]


class StageBoard:
    """The rows, and their rendering (rich calls :meth:`__rich__` on every refresh)."""

    def __init__(self, rows: list[StageRow], title: str) -> None:
        self.rows = rows
        self.title = title

    def start(self, row: StageRow) -> None:
        row.state, row.started = "running", time.perf_counter()

    def finish(self, row: StageRow, ok: bool, seconds: float) -> None:
        row.state, row.seconds = ("finished" if ok else "failed"), seconds

    def __rich__(self) -> RenderableType:
        table = Table.grid(padding=(0, 2))
        for _ in range(3):
            table.add_column(no_wrap=True)
        for row in self.rows:
            table.add_row(*self.cells(row))
        return Group(Text(self.title, style="bold"), table)

    def cells(self, row: StageRow) -> list[RenderableType]:
        """A row's cells: its state and label, then its bar or its time."""
        symbol, style = STATES[row.state]
        cells: list[RenderableType] = [Text(f"{symbol} {row.label}", style=style)]
        if row.state == "running":
            running_s = time.perf_counter() - (row.started or time.perf_counter())
            cells += progress_cells(read_progress(row.run_dir), running_s)
        elif row.seconds is not None:  # a failed stage's log is shown below the board
            cells.append(Text(f"{row.seconds:.0f} s", style=style))
        return cells
