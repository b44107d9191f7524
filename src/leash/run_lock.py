"""One trainer per run folder: ``leash train`` holds an exclusive lock on ``<run>/.lock``.

A second trainer started in a folder another one is writing (a rerun while a killed parent's
stage child still trains, two shells, a sweep pointed at one folder) would interleave
checkpoints and logs; it stops at once with an error naming the folder instead. The lock is an
``flock``: the kernel drops it when its holder dies, however it dies, so a killed run never
leaves a stale lock behind. Only the first process of a distributed run takes it (the others
are started by it, in the same folder).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock."""


def _is_first_process() -> bool:
    """True unless this is a later rank of a distributed run (its launcher sets these)."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


@contextmanager
def run_folder_lock(output_dir: str | Path) -> Iterator[None]:
    """Hold ``<output_dir>/.lock`` for the block; raise RunFolderBusy when another holds it."""
    if not _is_first_process():
        yield
        return
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFolderBusy(
                f"the run folder {folder} is in use by {holder}; wait for it to end, or give "
                "this run its own folder (hydra.run.dir=...)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
