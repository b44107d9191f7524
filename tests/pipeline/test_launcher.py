"""A stage child dies with its parent, however the parent dies."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

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
