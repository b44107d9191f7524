"""Training curves: reading the CSV log, the mean over seeds, the wall-time column, curves.png.

The logs are written by hand (or by the CSV logger on a fake clock), so every expected value
below is a number chosen here.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest

from leash import logging_csv
from leash.logging_csv import ELAPSED_COLUMN, ResumableCSVLogger
from leash.report.curves import LOG_FILE, mean_series, method_logs, plot_curves, read_log, series
from leash.report.runs import load_runs
from report.test_report import DPO_METRICS, is_png, write_run


def write_log(folder: Path, rows: list[dict]) -> Path:
    """A run's ``logs/metrics.csv`` holding ``rows`` (missing keys left blank, as Lightning)."""
    path = folder / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted({key for row in rows for key in row})
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def dpo_rows(losses: list[float], seconds_per_step: float = 1.0) -> list[dict]:
    """A DPO log: an lr row and a train row per step, one validation row at the end."""
    rows = []
    for step, loss in enumerate(losses):
        rows.append({"step": step, "lr-AdamW": 1e-4, ELAPSED_COLUMN: step * seconds_per_step})
        rows.append({"step": step, "epoch": 0, "train/loss": loss,
                     "train/rewards/margins": 0.1 * step, ELAPSED_COLUMN: step * seconds_per_step})
    last = len(losses) - 1
    rows.append({"step": last, "val/loss": 0.6, "eval/exact_kl": 0.15,
                 ELAPSED_COLUMN: last * seconds_per_step + 0.5})
    return rows


PPO_ROWS = [
    {"step": step, "train/loss/policy_avg": -0.1 * step, "train/objective/scores": 0.2 * step,
     "train/objective/kl": 0.05 * step, ELAPSED_COLUMN: 2.0 * step}
    for step in range(3)
]


def test_series_by_step_keeps_the_last_value_of_a_step(tmp_path: Path) -> None:
    rows = [
        {"step": "0", "train/loss": "0.7", ELAPSED_COLUMN: "0.5"},
        {"step": "0", "lr-AdamW": "0.1", ELAPSED_COLUMN: "0.6"},  # no loss: not a point
        {"step": "1", "train/loss": "0.6", ELAPSED_COLUMN: "1.5"},
        {"step": "1", "train/loss": "0.65", ELAPSED_COLUMN: "1.75"},  # logged again: this wins
    ]
    write_log(tmp_path, rows)
    loss = series(read_log(tmp_path), "train/loss")
    assert loss.steps == (0, 1) and loss.values == (0.7, 0.65) and loss.elapsed == (0.5, 1.75)
    assert series(read_log(tmp_path), "train/objective/kl") is None
    assert read_log(tmp_path / "no-such-run") == []


def test_a_log_without_wall_time_has_steps_only(tmp_path: Path) -> None:
    write_log(tmp_path, [{"step": 0, "train/loss": 1.0}, {"step": 3, "train/loss": 0.5}])
    loss = series(read_log(tmp_path), "train/loss")
    assert loss.steps == (0, 3) and loss.elapsed is None


def test_mean_over_seeds_at_the_steps_every_seed_logged(tmp_path: Path) -> None:
    write_log(tmp_path / "a", dpo_rows([0.7, 0.5, 0.3], seconds_per_step=1.0))
    write_log(tmp_path / "b", dpo_rows([0.6, 0.4], seconds_per_step=3.0))
    seeds = [series(read_log(tmp_path / name), "train/loss") for name in ("a", "b")]
    mean = mean_series(seeds)
    # steps 0 and 1 only (b stops at 1): (0.7 + 0.6) / 2, (0.5 + 0.4) / 2; times (0+0)/2, (1+3)/2
    assert mean.steps == (0, 1)
    assert mean.values == pytest.approx((0.65, 0.45))
    assert mean.elapsed == pytest.approx((0.0, 2.0))


def seeded_runs(root: Path) -> Path:
    """Two DPO seeds (one method), one PPO run, and an RM run without a log."""
    for seed, losses in ((0, [0.69, 0.6, 0.5]), (1, [0.69, 0.62, 0.55])):
        folder = write_run(root / f"seed_{seed}" / "dpo", overrides=(f"seed={seed}",),
                           metrics=DPO_METRICS)
        config = folder / ".hydra" / "config.yaml"
        config.write_text(config.read_text().replace("seed: 0", f"seed: {seed}"))
        write_log(folder, dpo_rows(losses))
    write_log(write_run(root / "ppo", algo="ppo", metrics=DPO_METRICS), PPO_ROWS)
    write_run(root / "rm", algo="reward", metrics={"val/accuracy": 0.6})
    return root


def test_methods_group_seeds_and_skip_runs_without_logs(tmp_path: Path) -> None:
    methods = method_logs(load_runs(seeded_runs(tmp_path)))
    assert [(m.name, len(m.logs)) for m in methods] == [("ppo-exact", 1), ("dpo-exact", 2)]
    seeds, mean = methods[1].curves(("train/loss/policy_avg", "train/loss"))
    assert [s.key for s in seeds] == ["train/loss", "train/loss"]
    assert mean.values == pytest.approx((0.69, 0.61, 0.525))
    ppo_seeds, ppo_mean = methods[0].curves(("train/objective/kl",))
    assert ppo_seeds[0].values == pytest.approx((0.0, 0.05, 0.1)) and ppo_mean is None


def test_curves_png_names_each_method_and_key(tmp_path: Path) -> None:
    plot = plot_curves(load_runs(seeded_runs(tmp_path / "runs")), tmp_path / "curves.png")
    assert plot is not None and is_png(plot.path)
    assert "dpo-exact: train/loss, val/loss" in plot.source
    assert "ppo-exact: train/loss/policy_avg" in plot.source
    assert "dpo-exact: train/rewards/margins" in plot.source
    # DPO logs no KL per step: its KL is the evaluator's; this PPO log has no validation row
    assert "(ppo-exact: train/objective/kl; dpo-exact: eval/exact_kl)" in plot.source
    assert "no wall time" not in plot.source and "reward-exact" not in plot.source


def test_no_logs_no_curves(tmp_path: Path) -> None:
    write_run(tmp_path / "rm", algo="reward", metrics={"val/accuracy": 0.6})
    assert plot_curves(load_runs(tmp_path), tmp_path / "curves.png") is None


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_csv_logger_writes_wall_time_and_a_resumed_run_continues_it(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(logging_csv, "time", SimpleNamespace(monotonic=clock.monotonic))
    first = ResumableCSVLogger(str(tmp_path), resume=False).experiment
    for step, seconds in enumerate((2.0, 3.0, 5.0)):
        clock.now += seconds
        first.log_metrics({"train/loss": 1.0 - 0.1 * step}, step)
    first.save()
    elapsed = series(read_log(tmp_path), "train/loss").elapsed
    assert elapsed == (2.0, 5.0, 10.0)
    # Resumed from a checkpoint taken after the first two rows: the third is cut and logged again,
    # its time counted from the second row's 5 s, not from the killed process's start.
    second = logging_csv._ContinuingWriter(first.log_dir, keep=True)
    second.keep_rows(2)
    clock.now += 4.0
    second.log_metrics({"train/loss": 0.8}, 2)
    second.save()
    loss = series(read_log(tmp_path), "train/loss")
    assert loss.steps == (0, 1, 2) and loss.elapsed == (2.0, 5.0, 9.0)
