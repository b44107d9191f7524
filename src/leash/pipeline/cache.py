"""Artifact cache: stage outputs stored under a key derived from the config that produced them.

An artifact is a folder ``<root>/<kind>/<key>``. It is built in a temporary sibling folder and
renamed into place only when complete, so a run killed mid-write leaves nothing that a later run
would reuse. A per-artifact file lock makes concurrent jobs of a sweep build it once: the others
wait, then reuse it.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from leash import __version__

log = logging.getLogger(__name__)

_COMPLETE = ".complete"


def _canonical(value: Any) -> Any:
    """A JSON-ready form of configs: dataclasses as dicts, enums as their values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def config_key(*parts: Any) -> str:
    """A short stable hash of config parts; any change to any part gives a new key."""
    # The package version is part of every key: a new release never reuses an older artifact.
    parts = (__version__, *parts)
    text = json.dumps([_canonical(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ArtifactCache:
    """Folders of finished artifacts under ``root``, looked up by kind and config key."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def path(self, kind: str, key: str) -> Path:
        """Where the artifact lives once complete."""
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        """Whether a complete artifact exists (half-written folders do not count)."""
        return (self.path(kind, key) / _COMPLETE).exists()

    def store(self, kind: str, key: str, write: Callable[[Path], None]) -> Path:
        """Write an artifact with ``write(tmp_dir)`` and rename it into place when complete.

        An exception or a kill inside ``write`` leaves only a temporary folder, never an
        artifact that a later run would reuse. If a concurrent job stored the same key first,
        its copy wins and ours is discarded.
        """
        final = self.path(kind, key)
        tmp = final.parent / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            write(tmp)
            (tmp / _COMPLETE).write_text(json.dumps({"stored_at": time.time()}))
            with _locked(self.root / kind / f"{key}.lock"):
                if not self.has(kind, key):
                    if final.exists():  # an incomplete folder left by hand or an old version
                        shutil.rmtree(final)
                    os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], None]) -> Path:
        """Return the artifact, building it first with ``build(tmp_dir)`` when it is missing.

        ``build`` writes the artifact's files into ``tmp_dir``, which is stored atomically. The
        build runs under a per-artifact lock, so concurrent jobs of a sweep build it once: the
        others wait, then reuse it.
        """
        return self.build_once(kind, key, lambda tmp: self.store(kind, key, build))

    def build_once(self, kind: str, key: str, build: Callable[[Path], object]) -> Path:
        """Like :meth:`get_or_build`, for builders that store the artifact themselves.

        ``build`` must leave ``kind/key`` complete in the cache (e.g. a child process that
        stores what it trained); it gets the artifact's final path for reference.
        """
        if self.has(kind, key):
            log.info("cache: reusing %s %s (%s)", kind, key, self.path(kind, key))
            return self.path(kind, key)
        with _locked(self.root / kind / f"{key}.build-lock"):
            if self.has(kind, key):
                log.info("cache: reusing %s %s built by another job", kind, key)
                return self.path(kind, key)
            started = time.perf_counter()
            log.info("cache: building %s %s", kind, key)
            build(self.path(kind, key))
            if not self.has(kind, key):
                raise RuntimeError(f"building {kind} {key} stored nothing")
            log.info("cache: built %s %s in %.1fs", kind, key, time.perf_counter() - started)
        return self.path(kind, key)


def link_or_copy_tree(source: Path, destination: Path) -> None:
    """Copy a folder, hard-linking files where the file system allows (no duplicate bytes)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link_or_copy, dirs_exist_ok=True)
