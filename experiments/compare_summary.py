"""The README's sentences about the main comparison, written from its committed results.

``python experiments/compare_summary.py [results_by_method.csv]`` prints them; the README holds
them between ``<!-- generated: compare_summary -->`` and ``<!-- /generated -->``, and
``tests/test_readme_figures.py`` checks that they are what this script writes from the
committed file, so they cannot drift from the numbers. The file is the one
``leash compare seeds=[0,1,2]`` writes (its report files are committed there).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "compare" / "results_by_method.csv"


def _methods(path: Path) -> dict[str, dict[str, str]]:
    """Rows of the per-method table by algorithm."""
    with path.open(newline="") as handle:
        return {row["algo"]: row for row in csv.DictReader(handle)}


def _figure(row: dict[str, str], column: str) -> str:
    """``mean ± ci95`` of a column, to three decimals."""
    return f"{float(row[f'{column} mean']):.3f} ± {float(row[f'{column} ci95']):.3f}"


def _mean(row: dict[str, str], column: str) -> float:
    return float(row[f"{column} mean"])


def summary(path: Path = RESULTS) -> str:
    """The sentences, from the means and 95% t-intervals over the seeds."""
    rows = _methods(path)
    sft, ppo, ppo_gt, dpo = rows["sft"], rows["ppo"], rows["ppo_gt"], rows["dpo"]
    seeds = len(dpo["seeds"].split())
    base = _mean(sft, "gold reward")
    gain = (_mean(dpo, "gold reward") - base) / (_mean(ppo, "gold reward") - base)
    kl = _mean(dpo, "exact KL (nats)") / _mean(ppo, "exact KL (nats)")
    time = _mean(dpo, "wall time (s)") / _mean(ppo, "wall time (s)")
    return "\n".join([
        f"Over {seeds} seeds (mean ± half-width of the 95% t-interval), gold reward at exact KL:",
        f"PPO-GT {_figure(ppo_gt, 'gold reward')} at {_figure(ppo_gt, 'exact KL (nats)')} nats,",
        f"PPO with the learned reward model {_figure(ppo, 'gold reward')} at "
        f"{_figure(ppo, 'exact KL (nats)')} (its RM score: {_figure(ppo, 'RM score')}),",
        f"DPO {_figure(dpo, 'gold reward')} at {_figure(dpo, 'exact KL (nats)')}, from the SFT "
        f"reference's {_figure(sft, 'gold reward')}.",
        f"On the means, DPO's gain in gold reward over SFT is {100 * gain:.0f}% of PPO-RLHF's, at "
        f"{100 * kl:.0f}% of its exact KL and {100 * time:.0f}% of its wall time.",
    ])


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS))
