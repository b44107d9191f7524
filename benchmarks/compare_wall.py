"""Wall time and printed lines of `leash compare` from a clean cache, one stage at a time
against two at once (the default on a CPU machine with two or more CPUs).

Each round runs both, interleaved, each in a fresh cache and output folder, its output piped
(a pipe gets one line per stage, as a log file would; a terminal's live board redraws in
place). Reports medians and their ratio:

    python benchmarks/compare_wall.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import environment, print_table, write_result

CONTENDERS = {"one stage at a time": ["--jobs", "1"], "two at once": ["--jobs", "2"]}
RESULT = Path(__file__).parent / "results" / "compare_wall.json"


def timed_compare(flags: list[str], overrides: list[str]) -> tuple[float, int]:
    """Seconds for one `leash compare` process from a clean cache, start to exit, and the
    lines it printed."""
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, "-m", "leash", "compare", *flags, "--out", f"{root}/out",
                   f"paths.cache_dir={root}/cache", *overrides]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return time.perf_counter() - started, len(done.stdout.splitlines())


def summary(path: Path = RESULT) -> str:
    """The README's sentence about the comparison's wall time, from the committed result."""
    import json

    result = json.loads(path.read_text())
    one, two = (result["medians"][name] for name in CONTENDERS)
    return (
        f"`benchmarks/compare_wall.py` times `leash compare` from a clean cache on a 2-core CPU "
        f"(median of {result['rounds']}): **{two['seconds']:.0f} s** with two stages at once "
        f"(the default), {one['seconds']:.0f} s one at a time "
        f"({one['seconds'] / two['seconds']:.2f}x), printing {two['lines']:.0f} lines."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra overrides for every stage")
    args = parser.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
    for index in range(args.rounds):
        for name, flags in CONTENDERS.items():
            seconds, lines = timed_compare(flags, args.overrides)
            rounds[name].append({"seconds": seconds, "lines": lines})
            print(f"round {index + 1}: {name}: {seconds:.1f} s, {lines} lines", flush=True)
    medians = {name: {key: statistics.median(r[key] for r in runs) for key in ("seconds", "lines")}
               for name, runs in rounds.items()}
    one, two = (medians[name]["seconds"] for name in CONTENDERS)
    path = write_result("compare_wall", {
        "benchmark": "compare_wall",
        "command": "python benchmarks/compare_wall.py --rounds " + str(args.rounds),
        "overrides": args.overrides, "rounds": args.rounds, "per_round": rounds,
        "medians": medians, "ratios": {"one at a time / two at once": one / two},
        "environment": environment(),
    })
    print_table("leash compare from a clean cache", ["contender", "median s", "lines"],
                [[name, f"{m['seconds']:.1f}", f"{m['lines']:.0f}"] for name, m in medians.items()])
    print(f"one at a time / two at once: {one / two:.2f}x (written to {path})")


if __name__ == "__main__":
    main()
