"""One trainer per run folder: a second one is refused naming the folder; the lock dies with
its holder; later ranks of a distributed run do not take it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from leash.run_lock import LOCK_NAME, RunFolderBusy, run_folder_lock


def take(folder) -> None:
    """Take the folder's lock and give it back."""
    with run_folder_lock(folder):
        pass


def test_a_second_trainer_in_a_held_folder_is_refused_naming_the_folder_and_the_holder(tmp_path):
    busy = rf"{tmp_path} is in use by pid {os.getpid()}"
    with run_folder_lock(tmp_path), pytest.raises(RunFolderBusy, match=busy):
        take(tmp_path)
    take(tmp_path)  # released at the end of the block


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from leash.run_lock import run_folder_lock\n"
         f"with run_folder_lock({str(tmp_path)!r}):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
        take(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_folder_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text() == f"pid {os.getpid()}\n"


def test_later_ranks_of_a_distributed_run_share_the_first_ones_folder(tmp_path, monkeypatch):
    with run_folder_lock(tmp_path):
        monkeypatch.setenv("LOCAL_RANK", "1")
        take(tmp_path)
