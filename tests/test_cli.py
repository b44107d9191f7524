"""The `leash` command: help, printed config, and invalid values that stop before any loading."""

from __future__ import annotations

import subprocess
import sys

import pytest


def leash(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leash", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_help_lists_the_config_groups(isolated_run):
    result = leash("train", "--help")
    assert result.returncode == 0
    for group in ("algo:", "model:", "data:", "trainer:", "logger:", "callbacks:", "paths:",
                  "debug:", "experiment:", "sweep:", "peft:"):
        assert group in result.stdout, group


def test_cfg_job_prints_the_composed_config(isolated_run):
    result = leash("train", "algo.lr=0.005", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "lr: 0.005" in result.stdout
    assert "source: task" in result.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("algo.lr=-1", ["algo.lr", "must be > 0"]),
        ("data.bad_rows=sometimes", ["data.bad_rows", "skip, error"]),
    ],
)
def test_invalid_values_exit_nonzero_naming_the_key_and_load_nothing(
    isolated_run, override, expected
):
    result = leash("train", override)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for text in expected:
        assert text in output
    # Nothing was built or loaded: the artifact cache was never touched.
    assert not (isolated_run / "cache").exists()


def test_unknown_command_is_an_error():
    result = leash("trian")
    assert result.returncode == 2
    assert "unknown command" in result.stderr


def test_logger_none_drops_the_learning_rate_monitor_that_lightning_would_refuse():
    from lightning.pytorch.callbacks import LearningRateMonitor

    from leash.callbacks.progress import RunProgressBar
    from leash.cli import _without_logger_needs

    monitor, bar = LearningRateMonitor(), RunProgressBar()
    assert _without_logger_needs([monitor, bar], loggers=[]) == [bar]
    assert _without_logger_needs([monitor, bar], loggers=["csv"]) == [monitor, bar]
