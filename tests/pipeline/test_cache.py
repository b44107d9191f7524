"""The artifact cache: stable keys, atomic stores, no reuse of half-written artifacts, one build
for concurrent builders."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from leash.config import DataConfig, TaskConfig
from leash.pipeline.cache import ArtifactCache, config_key


def test_keys_are_stable_and_change_with_any_upstream_field():
    base = config_key("sft", TaskConfig(), 0)
    assert base == config_key("sft", TaskConfig(), 0)
    assert base != config_key("sft", TaskConfig(num_prompts=65), 0)
    assert base != config_key("sft", TaskConfig(), 1)
    assert config_key(DataConfig(name="x")) != config_key(DataConfig(name="x", batch_size=8))


def test_get_or_build_builds_once(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "weights.bin").write_text("w")

    first = cache.get_or_build("sft", "k1", build)
    second = cache.get_or_build("sft", "k1", build)
    assert first == second == tmp_path / "sft" / "k1"
    assert len(calls) == 1
    assert (first / "weights.bin").read_text() == "w"


def test_a_failed_build_leaves_nothing_reusable(tmp_path):
    cache = ArtifactCache(tmp_path)

    def crash(folder):
        (folder / "half.bin").write_text("partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        cache.get_or_build("sft", "k1", crash)
    assert not cache.has("sft", "k1")
    assert not cache.path("sft", "k1").exists()
    leftovers = [p for p in (tmp_path / "sft").iterdir() if not p.name.endswith("lock")]
    assert leftovers == []


def test_incomplete_folder_is_rebuilt(tmp_path):
    cache = ArtifactCache(tmp_path)
    stale = cache.path("sft", "k1")
    stale.mkdir(parents=True)
    (stale / "half.bin").write_text("partial")  # e.g. copied by hand, no completion marker
    assert not cache.has("sft", "k1")
    folder = cache.get_or_build("sft", "k1", lambda f: (f / "full.bin").write_text("ok"))
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "full.bin"]


def _build_counting(root: str, key: str, started) -> None:
    """One concurrent builder: waits for the others, then asks for the artifact."""

    def build(folder):
        with open(Path(root) / "builds.txt", "a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # the others arrive while this build runs
        (folder / "weights.bin").write_text("w")

    started.wait()
    ArtifactCache(root).get_or_build("sft", key, build)


def test_concurrent_builders_of_one_artifact_build_it_once(tmp_path):
    context = multiprocessing.get_context("fork")
    started = context.Barrier(3)
    workers = [context.Process(target=_build_counting, args=(str(tmp_path), "k1", started))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert len((tmp_path / "builds.txt").read_text().split()) == 1
    assert ArtifactCache(tmp_path).has("sft", "k1")
