"""Many `leash train` runs, a few at a time at one torch thread each, resumable: for the studies.

Each run has its own folder (`hydra.run.dir`) and log (`<folder>.log`); a folder that already
holds metrics.json is not trained again, so rerunning a study trains only what is missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


def study_arguments(description: str, out: Path) -> tuple[argparse.Namespace, Path]:
    """A study's command line (`--out`, `--runs`, `--jobs`, Hydra overrides for every run),
    parsed, with `--out` created; and the run folders' root (default `<out>/runs`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--runs", type=Path, help="run folders (default: <out>/runs)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (1 thread each)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    return args, (args.runs or args.out / "runs").resolve()


@dataclass(frozen=True)
class Run:
    """One `leash train` of a study: a display name, its folder and its overrides."""

    name: str
    folder: Path
    overrides: tuple[str, ...]


def train(run: Run, cache: Path) -> float:
    """Train `run` (one torch thread, the study's cache) unless it finished; its wall time (s)."""
    if (run.folder / "metrics.json").exists():
        return 0.0
    run.folder.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "leash", "train", *run.overrides, "threads=1",
               f"paths.cache_dir={cache}", f"hydra.run.dir={run.folder}"]  # fmt: skip
    start = time.monotonic()
    with run.folder.with_name(run.folder.name + ".log").open("w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    return time.monotonic() - start


def status_of(folder: Path) -> str:
    """`finished` (metrics.json), `non-finite` (stopped on a NaN/inf) or `failed`."""
    if (folder / "metrics.json").is_file():
        return "finished"
    error = folder / "error.txt"
    return "non-finite" if error.is_file() and "non-finite" in error.read_text() else "failed"


def run_all(runs: Sequence[Run], cache: Path, workers: int) -> float:
    """Train every run, `workers` at a time, printing one line as each ends; the wall time (s).

    Give the longest runs first: the workers then finish together."""
    start, done, lock = time.monotonic(), 0, threading.Lock()

    def one(run: Run) -> None:
        nonlocal done
        seconds = train(run, cache)
        with lock:
            done += 1
            print(f"[{done}/{len(runs)}] {run.name}: {status_of(run.folder)}"
                  + (f" ({seconds:.0f} s)" if seconds else " (already done)"), flush=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, runs))
    return time.monotonic() - start


def training_span(folders: Sequence[Path]) -> float:
    """Seconds from the first run's start to the last run's end, read off the run folders
    (metrics.json's write time minus the run's wall time), so a resumed invocation still
    reports how long the whole study took to train."""
    ends, starts = [], []
    for folder in folders:
        metrics = folder / "metrics.json"
        if metrics.is_file():
            wall = json.loads(metrics.read_text())["resources"]["wall_time_s"]
            ends.append(metrics.stat().st_mtime)
            starts.append(ends[-1] - float(wall))
    return max(ends) - min(starts) if ends else math.nan


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """A study's table: one CSV row per dict, the first dict's keys as the header."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def check_runs(records: Sequence) -> int:
    """A study's exit status: 1, each problem said on stderr, when a run lies above the exact
    optimal frontier (a bug in training or evaluation) or has no metrics.json; else 0."""
    from leash.report.plots import points_above_frontier
    from leash.report.runs import FINISHED

    failed = [r for r in records if r.status != FINISHED]
    above = points_above_frontier(list(records))
    for problem, runs_of_it in (("ABOVE THE OPTIMAL FRONTIER (a bug)", above),
                                ("runs without metrics.json", failed)):
        if runs_of_it:
            print(f"{problem}: {[str(r.path) for r in runs_of_it]}", file=sys.stderr)
    return 1 if above or failed else 0
