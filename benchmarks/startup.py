"""What `leash train` costs before it trains: composing the config alone, and the time from
process start to the end of the first DPO training step with a warm cache.

    python benchmarks/startup.py [--rounds 3] [--quick]

Contenders, alternating in every round:

- ``cfg_job``: ``python -m leash train --cfg job`` (compose, validate and print the config; no
  model, no data), wall time from process start to exit;
- ``first_step``: ``python -m leash train algo=dpo algo.max_steps=2`` with
  ``benchmarks/first_step.py``'s callback added, which prints the wall-clock time of the first
  ``on_train_batch_end``; time from just before the process is started to that mark, and the
  process's whole wall time.

One cache folder serves every run: a first, identical DPO run builds it (the SFT policy and
the preference pairs) and is discarded, so every measured run finds its upstream artifacts
cached. Every run has its own output folder. The SFT stage is shortened
(``upstream.sft=[algo.max_steps=20]``) so the discarded build is quick; the cached policy has
the same shape, so what a measured run loads is unchanged. One thread (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    FIRST_STEP_MARK,
    REPO,
    child_env,
    environment,
    interleave,
    print_table,
    write_result,
)

CONFIG_ONLY = ["train", "--cfg", "job"]
FIRST_STEP = [
    "train", "algo=dpo", "algo.max_steps=2", 'upstream.sft=["algo.max_steps=20"]',
    "+callbacks.first_step._target_=first_step.FirstStep",
]
ARGS = {"cfg_job": CONFIG_ONLY, "first_step": FIRST_STEP}
NOTES = [
    "The run that builds the cache is excluded; its wall time is kept as cache_build_s.",
    "Default callbacks and logger (csv) stay on, as a user's run has them; logger=none fails "
    "with the default callbacks (LearningRateMonitor needs a logger), so it is not used.",
    "first_step_s includes interpreter start, imports, config composition, loading the cached "
    "SFT policy and pairs, building the data module, the reference copy and the Trainer, and "
    "the first step itself.",
]


def run_leash(args: list[str], cache: Path, outputs: Path) -> dict[str, float]:
    """One ``python -m leash ...`` process: its wall time and, if marked, its first step time.

    Raises:
        RuntimeError: the process failed (its stderr tail is quoted).
    """
    env = child_env(LEASH_CACHE_DIR=str(cache), LEASH_OUTPUT_DIR=str(outputs))
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "leash", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)
    wall = time.time() - started
    if done.returncode:
        raise RuntimeError(f"leash {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    figures = {"wall_s": wall}
    mark = re.search(re.escape(FIRST_STEP_MARK) + r"([0-9.]+)", done.stderr)
    if mark:
        figures["first_step_s"] = float(mark.group(1)) - started
        figures["after_first_step_s"] = wall - figures["first_step_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round (smoke test)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        cache, outputs = Path(root, "cache"), Path(root, "outputs")
        build = run_leash(FIRST_STEP, cache, outputs / "build")
        results = interleave(
            list(ARGS), rounds,
            lambda name, index: run_leash(ARGS[name], cache, outputs / f"{name}-{index}"),
        )
    medians = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    ratio = medians["first_step"]["first_step_s"] / medians["cfg_job"]["wall_s"]
    print_table(
        f"startup: medians over {rounds} rounds (seconds)",
        ["contender", "wall s", "first step s", "after first step s"],
        [[name, row["wall_s"], row.get("first_step_s", "-"), row.get("after_first_step_s", "-")]
         for name, row in medians.items()],
    )
    print(f"\n  first_step_s / cfg_job wall_s = {ratio:.3g}   "
          f"(discarded cache build: {build['wall_s']:.1f} s)")
    path = write_result("startup", {
        "benchmark": "startup",
        "command": "python benchmarks/startup.py "
                   + ("--quick" if args.quick else f"--rounds {rounds}"),
        "settings": {"rounds": rounds, "commands": {
            name: "python -m leash " + " ".join(argv) for name, argv in ARGS.items()}},
        "definitions": {
            "wall_s": "process start to exit (parent's clock around subprocess.run)",
            "first_step_s": "just before the process starts to the first on_train_batch_end "
                            "(time.time() printed by first_step.FirstStep)",
            "after_first_step_s": "wall_s - first_step_s: the second step, the end-of-fit "
                                  "work, saving and exit",
        },
        "notes": NOTES,
        "cache_build_s": build["wall_s"],
        "medians": medians,
        "ratios": {"first_step_s/cfg_job_wall_s": ratio},
        "rounds": results,
        "environment": environment(threads=1),
        "wall_s": time.perf_counter() - started,
    })
    print(f"\nwritten to {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
