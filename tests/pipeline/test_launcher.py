"""A stage child dies with its parent, however the parent dies; a failed child's own error line
and status become the parent's."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from leash.pipeline.launcher import ChildExit, StageFailed, run_train

PARENT = """
import os, signal, subprocess
from leash.pipeline.launcher import die_with
child = subprocess.Popen(["sleep", "120"], stdout=subprocess.DEVNULL,  # not our pipes
                         stderr=subprocess.DEVNULL, preexec_fn=die_with(os.getpid()))
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def alive(pid: int) -> bool:
    """Running or sleeping: not gone and not a zombie waiting for init to reap it."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux signal")
def test_a_child_is_killed_when_its_parent_is_killed():
    parent = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True)
    assert parent.returncode == -9
    child = int(parent.stdout)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_failed_child_says_its_own_error_line_and_status(tmp_path, capfd):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "error.txt").write_text("an earlier attempt's error")
    child = run_train(["algo=dpo", "algo.beta=-1", "algo.lr=-2"], tmp_path / "run")
    assert child.code == 2  # an invalid config
    assert child.error.splitlines() == [
        "invalid configuration:",
        "  algo.lr: must be > 0, got -2.0",
        "  algo.beta: must be > 0, got -1.0",
    ]
    assert f"leash train: {child.error}" in capfd.readouterr().err  # it printed it, too
    failed = StageFailed("sft", tmp_path / "run", child)
    assert str(failed) == f"the sft stage (run folder {tmp_path / 'run'}) failed: {child.error}"
    assert failed.exit_code == 2


def test_a_killed_child_is_reported_by_its_status():
    killed = StageFailed("reward", Path("/runs/r"), ChildExit(137, None))
    assert str(killed).endswith("failed: exit status 137; its log is in /runs/r")


def test_a_quiet_child_writes_its_output_to_the_log_file(tmp_path):
    log_file = tmp_path / "run" / "console.log"
    child = run_train(["algo=dpo", "algo.beta=-1"], tmp_path / "run", log_file)
    assert child.code == 2
    assert "algo.beta: must be > 0, got -1.0" in log_file.read_text()  # stderr, in the file
