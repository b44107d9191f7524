"""The README's sentences about the offline real-text preset, from its committed report.

The results are one `leash compare experiment=real_text_offline --out
experiments/results/real_text_offline` (a single seed); :func:`summary` writes the README's
reading of them, kept in step by `tests/test_readme_figures.py` (see write_summaries.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "real_text_offline" / "results.csv"


def summary(path: Path = RESULTS) -> str:
    """What the proxy scores and win rates say, from the per-stage rows."""
    with path.open(newline="") as handle:
        rows = {row["method"].split("-")[0]: row for row in csv.DictReader(handle)}
    ppo, dpo, sft = rows["ppo"], rows["dpo"], rows["sft"]

    def value(row: dict[str, str], column: str) -> float:
        return float(row[column])

    dpo_rate = value(dpo, "win rate")
    return (
        "The proxy RM and the win rate (judged by the proxy here: no `eval.judge` was given) "
        f"show PPO optimising the reward model it is trained against (RM score "
        f"{value(ppo, 'RM score'):.3f} against the SFT policy's {value(sft, 'RM score'):.3f}, "
        f"win rate {value(ppo, 'win rate'):.3f}) at {value(ppo, 'sample KL (nats)'):.0f} nats "
        f"of sample KL; DPO's win rate is {dpo_rate:.3f}"
        + (" (below one half)" if dpo_rate < 0.5 else "")
        + f" at {value(dpo, 'sample KL (nats)'):.0f} nats."
    )


if __name__ == "__main__":
    print(summary())
