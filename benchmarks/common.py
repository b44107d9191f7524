"""Helpers every benchmark shares: threads, child processes, step clocks, peak memory, medians,
the results file and the printed table.

How a benchmark runs (STYLE.md, habit 14): its contenders run alternately in one invocation
(round 1: A, B, C; round 2: A, B, C; ...), each round's raw figures are kept, and the report is
the median over rounds of each figure and the ratios of those medians. Absolute times on a
shared CPU mean little; ratios measured side by side do.

This module imports only the standard library at the top, so the parent process that
orchestrates the children stays light; torch is imported by the functions that need it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
"""The worktree this benchmark belongs to (its `src/` is the leash that is measured)."""
RESULTS = REPO / "benchmarks" / "results"
"""Where every benchmark writes `<name>.json`."""
RESULT_PREFIX = "@@benchmark-result "
"""Marks the one stdout line of a child process that carries its JSON result."""
FIRST_STEP_MARK = "@@first-step-end "
"""Starts the stderr line ``first_step.FirstStep`` prints: the rest is ``time.time()``."""

# ------------------------------------------------------------------------------ processes
def child_env(**extra: str) -> dict[str, str]:
    """Environment of every child process: this worktree's leash, one thread, nothing online.

    ``PYTHONPATH`` puts this worktree's ``src`` (not the venv's editable install, which points
    elsewhere), ``tests`` and ``benchmarks`` first; thread pools are pinned to one thread before
    torch starts; hub, dataset and W&B access are switched off.
    """
    paths = [REPO / "src", REPO / "tests", REPO / "benchmarks"]
    inherited = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*map(str, paths), *([inherited] if inherited else [])]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        **extra,
    }


def single_thread() -> int:
    """Pin torch to one intra-op and one inter-op thread (the machine is shared); returns 1."""
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already ran here
        torch.set_num_interop_threads(1)
    return torch.get_num_threads()


def emit(result: Any) -> None:
    """Print a child's result as the one marked JSON line its parent reads."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(script: Path, args: list[str], timeout: float = 600) -> Any:
    """Run ``python script args`` as a fresh process and return the result it emitted.

    Raises:
        RuntimeError: the child failed or emitted no result (its stderr tail is quoted).
    """
    done = subprocess.run(
        [sys.executable, str(script), *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not lines:
        raise RuntimeError(
            f"{script.name} {' '.join(args)} failed (exit {done.returncode}):\n"
            + done.stderr[-4000:]
        )
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def forked(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` run in a forked copy of this process; its JSON-able result.

    A child process imports its contender's libraries once, then forks one copy per workload:
    each copy starts from the post-import state (its import baseline) with a heap of its own,
    so one workload's allocations never count in the next one's peak, and the import cost is
    paid once per contender per round instead of once per workload.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: run, report through the pipe, leave without cleanup handlers
        os.close(read_end)
        try:
            payload = {"ok": function(*args)}
        except BaseException:  # noqa: BLE001 - report any failure to the parent
            payload = {"error": traceback.format_exc()}
        with os.fdopen(write_end, "w") as pipe:
            json.dump(payload, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    payload = json.loads(text) if text else {"error": "the forked process wrote nothing"}
    if "error" in payload:
        raise RuntimeError(f"{function.__name__}{args} failed in its forked process:\n"
                           + payload["error"])
    return payload["ok"]


def child_main(run: Callable[[Any], dict], workloads: dict[str, Any], imports: list[str]) -> None:
    """Body of a contender's child process: one thread, the contender's imports (they make its
    baseline), then each workload in a forked copy; emits ``{workload: figures}``."""
    single_thread()
    for module in imports:
        importlib.import_module(module)
    emit({name: forked(run, workload) for name, workload in workloads.items()})


def contest(script: Path, contenders: list[str], rounds: int, args: list[str]) -> dict:
    """Every contender as a fresh ``script --child NAME args`` process, interleaved over rounds:
    ``result[contender][round]`` is what that child emitted."""
    return interleave(
        contenders, rounds, lambda name, _: run_child(script, ["--child", name, *args])
    )


# --------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` figure in KiB (``VmRSS``: resident now, ``VmHWM``: its peak)."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


class PeakMemory:
    """Peak resident set size of this process while the block runs, over its RSS at the start.

    Entering resets the kernel's high-water mark to the current RSS (``/proc/self/clear_refs``
    ``5``), so the peak is that of the block alone: the libraries imported before it are the
    baseline, every model, optimizer state, activation, data set and trainer object made
    inside it counts.
    """

    def __enter__(self) -> PeakMemory:
        Path("/proc/self/clear_refs").write_text("5")
        self.baseline_kib = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        rusage_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        self.peak_kib = max(_status_kib("VmHWM"), rusage_peak)

    def figures(self) -> dict[str, float]:
        """``peak_mib`` over the baseline and the ``baseline_mib`` itself."""
        return {
            "peak_mib": (self.peak_kib - self.baseline_kib) / 1024,
            "baseline_mib": self.baseline_kib / 1024,
        }


# --------------------------------------------------------------------------------- timing
class StepClock:
    """Timestamps of step ends; steady-state figures exclude the first ``warmup`` steps.

    A step is timed from the end of the previous step to its own end (data loading, logging
    and every framework hook included), so the first step counted starts where the last
    warm-up step ended.
    """

    def __init__(self) -> None:
        self.ends: list[float] = []

    def tick(self) -> None:
        """Record the end of a step."""
        self.ends.append(time.perf_counter())

    def steady(self, warmup: int, items_per_step: int) -> dict[str, Any]:
        """Per-step seconds after warm-up and the rate ``items_per_step x steps / seconds``.

        Raises:
            ValueError: fewer than ``warmup + 1`` steps were recorded, or ``warmup < 1``.
        """
        if warmup < 1 or len(self.ends) <= warmup:
            raise ValueError(f"need warmup >= 1 and more than {warmup} steps, got {len(self.ends)}")
        steps = [b - a for a, b in zip(self.ends[warmup - 1:], self.ends[warmup:], strict=False)]
        seconds = self.ends[-1] - self.ends[warmup - 1]
        return {
            "steps_timed": len(steps),
            "step_s": steps,
            "median_step_s": statistics.median(steps),
            "per_s": items_per_step * len(steps) / seconds,
        }


# ---------------------------------------------------------------------------- aggregation
def interleave(
    contenders: list[str], rounds: int, run: Callable[[str, int], Any]
) -> dict[str, list[Any]]:
    """``run(contender, round)`` for every round, contenders alternating inside each round."""
    results: dict[str, list[Any]] = {name: [] for name in contenders}
    for index in range(rounds):
        for name in contenders:
            print(f"  round {index + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            results[name].append(run(name, index))
    return results


def medians(per_round: list[dict[str, Any]], keys: list[str]) -> dict[str, float]:
    """Median over rounds of each scalar figure in ``keys``."""
    return {key: statistics.median(figures[key] for figures in per_round) for key in keys}


def ratios(
    summary: dict[str, dict[str, float]], key: str, pairs: list[tuple[str, str]]
) -> dict[str, float]:
    """``median(a) / median(b)`` of one figure for every (a, b) in ``pairs``."""
    return {f"{a}/{b}": summary[a][key] / summary[b][key] for a, b in pairs}


def by_workload(
    results: dict[str, list[dict[str, dict[str, Any]]]], keys: list[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Medians over rounds, per workload then contender, of rounds shaped
    ``results[contender][round][workload] = figures``."""
    workloads = list(next(iter(results.values()))[0])
    return {
        workload: {
            name: medians([figures[workload] for figures in rounds], keys)
            for name, rounds in results.items()
        }
        for workload in workloads
    }


# --------------------------------------------------------------------------------- output
@dataclass(frozen=True)
class Table:
    """What a contest reports: the figures that get a median, those compared, and how."""

    columns: dict[str, str]
    """Figure key -> printed column title."""
    compared: list[str]
    """Figure keys whose medians are compared between contenders."""
    pairs: list[tuple[str, str]]
    """(a, b) contender pairs, reported as ``a/b``."""


def environment(threads: int | None = None) -> dict[str, Any]:
    """Versions of the measured libraries and the machine (read without importing them)."""

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        **{name: version(name) for name in ("torch", "transformers", "trl", "lightning")},
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_at_end": os.getloadavg(),
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """A plain aligned table on stdout (floats with 4 significant digits)."""

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    cells = [header, *[[cell(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  " + "  ".join(text.rjust(width) for text, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))


def report_contest(
    name: str,
    results: dict[str, list[dict[str, dict[str, Any]]]],
    table: Table,
    extra: dict[str, Any],
) -> Path:
    """Print per-workload medians and ratios, and write ``results/<name>.json``.

    Args:
        name: the benchmark (and results file) name.
        results: ``results[contender][round][workload]`` figures, as :func:`contest` returns.
        table: the figures that get a median, those compared, and the contender pairs.
        extra: more top-level JSON entries (command, settings, notes, environment, ...).
    """
    columns, ratio_keys, pairs = table.columns, table.compared, table.pairs
    summary = by_workload(results, list(columns))
    compared = {
        workload: {key: ratios(figures, key, pairs) for key in ratio_keys}
        for workload, figures in summary.items()
    }
    for workload, figures in summary.items():
        print_table(
            f"{name} [{workload}] medians over {len(next(iter(results.values())))} rounds",
            ["contender", *columns.values()],
            [[contender, *(row[key] for key in columns)] for contender, row in figures.items()],
        )
        print_table(
            f"{name} [{workload}] ratios of medians",
            ["ratio", *(columns[key] for key in ratio_keys)],
            [[f"{a}/{b}", *(compared[workload][key][f"{a}/{b}"] for key in ratio_keys)]
             for a, b in pairs],
        )
    payload = {"benchmark": name, **extra, "medians": summary, "ratios": compared,
               "rounds": results}
    path = write_result(name, payload)
    print(f"\nwritten to {path.relative_to(REPO)}")
    return path


# --------------------------------------------------------------------------- command line
def contest_main(
    name: str,
    description: str,
    runs: dict[str, Callable[[Any], dict]],
    imports: dict[str, list[str]],
    workloads: Callable[[bool], dict[str, Any]],
    table: Table,
    extra: Callable[[int, dict[str, Any]], dict[str, Any]],
    checks: Callable[[dict[str, list[Any]]], dict[str, Any]] | None = None,
) -> None:
    """The command line of a benchmark whose contenders run as child processes.

    ``python <script> [--rounds N] [--quick]`` runs every contender in a fresh child per round
    (``--child NAME``, the same script) and reports; the child runs ``runs[NAME]`` on every
    workload after importing ``imports[NAME]``.

    Args:
        name: benchmark and results-file name.
        description: the script's one-line description (``--help``).
        runs: contender -> function of one workload returning its figures.
        imports: contender -> modules imported before its baseline is read.
        workloads: ``quick -> {workload name: workload}``.
        table: the report's columns and ratios.
        extra: ``(rounds, workloads) -> `` more JSON entries (settings, notes, ...).
        checks: ``results -> `` more JSON entries computed from the raw rounds (printed too).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="few steps, one round (smoke test)")
    parser.add_argument("--child", choices=list(runs), help=argparse.SUPPRESS)
    args = parser.parse_args()
    chosen = workloads(args.quick)
    if args.child:
        child_main(runs[args.child], chosen, imports[args.child])
        return
    rounds = 1 if args.quick else args.rounds
    started = time.perf_counter()
    script = Path(sys.argv[0]).resolve()
    results = contest(script, list(runs), rounds, ["--quick"] if args.quick else [])
    command = f"python benchmarks/{script.name} " + (
        "--quick" if args.quick else f"--rounds {rounds}"
    )
    checked = checks(results) if checks else {}
    if checked:
        print(json.dumps(checked, indent=2))
    report_contest(name, results, table, {
        "command": command,
        **extra(rounds, chosen),
        **checked,
        "environment": environment(threads=1),
        "wall_s": time.perf_counter() - started,
    })
