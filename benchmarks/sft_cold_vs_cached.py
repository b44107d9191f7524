"""Wall time of `leash train algo=sft data=exact` from a clean cache vs. with the cache warm.

The first run builds the tiny base model, the task's SFT corpus and trains SFT; a second
identical run finds the cached policy and only evaluates it. Each repeat uses a fresh cache.
Reports medians and their ratio, measured side by side in one invocation:

    python benchmarks/sft_cold_vs_cached.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(cache: Path, outputs: Path, extra: list[str]) -> float:
    """Seconds for one `leash train` process, start to exit (imports included)."""
    env = {**os.environ, "LEASH_CACHE_DIR": str(cache), "LEASH_OUTPUT_DIR": str(outputs)}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "leash", "train", "algo=sft", "data=exact", *extra],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


RESULT = Path(__file__).parent / "results" / "sft_cold_vs_cached.json"


def summary(path: Path = RESULT) -> str:
    """The README's sentence about the cache, from the committed result."""
    result = json.loads(path.read_text())
    return (
        f"`benchmarks/sft_cold_vs_cached.py` times `leash train algo=sft data=exact` from a clean "
        f"cache against a warm one (median of {result['repeats']}, 2-core CPU): "
        f"**{result['cold_median_s']:.1f} s** cold, **{result['cached_median_s']:.1f} s** cached "
        "(the cached run only evaluates the stored policy; most of what remains is Python "
        "start-up)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/sft_cold_vs_cached.json")
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()

    cold, cached = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as root:
            cache, outputs = Path(root, "cache"), Path(root, "outputs")
            cold.append(timed_run(cache, outputs, args.overrides))
            cached.append(timed_run(cache, outputs, args.overrides))
    result = {
        "command": "leash train algo=sft data=exact " + " ".join(args.overrides),
        "repeats": args.repeats,
        "cold_s": cold,
        "cached_s": cached,
        "cold_median_s": statistics.median(cold),
        "cached_median_s": statistics.median(cached),
        "speedup": statistics.median(cold) / statistics.median(cached),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"clean cache : median {result['cold_median_s']:.1f} s  {[round(t, 1) for t in cold]}")
    print(
        f"warm cache  : median {result['cached_median_s']:.1f} s  {[round(t, 1) for t in cached]}"
    )
    print(f"speed-up    : {result['speedup']:.2f}x   (written to {args.out})")


if __name__ == "__main__":
    main()
