"""Fixtures of the end-to-end runs forked from the test process (:func:`killing.forked_train`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from killing import forked_train


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for every run here: the preference pairs are generated once."""
    return tmp_path_factory.mktemp("resume-cache")


@pytest.fixture(scope="session")
def sft_policy(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> Path:
    """A short SFT run whose policy every other algorithm here starts from."""
    run = tmp_path_factory.mktemp("resume-sft") / "run"
    overrides = ("algo=sft", "algo.max_steps=20", "eval.enabled=false",
                 f"paths.cache_dir={shared_cache}")
    assert forked_train(run, overrides) == 0, (run.parent / "run.log").read_text()[-3000:]
    return run / "policy"


@pytest.fixture(scope="session")
def reward_model(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path,
                 sft_policy: Path) -> Path:
    """A short reward-model run from the shared SFT policy, for the runs that score with one."""
    run = tmp_path_factory.mktemp("reward") / "run"
    overrides = ("algo=reward", "algo.max_steps=4", "eval.enabled=false",
                 f"upstream.sft_policy={sft_policy}", f"paths.cache_dir={shared_cache}")
    assert forked_train(run, overrides) == 0, (run.parent / "run.log").read_text()[-3000:]
    return run / "reward_model"
