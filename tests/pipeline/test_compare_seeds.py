"""`leash compare`: seeds are read off the overrides (or refused in a sentence); every stage
gets the same thread count."""

from __future__ import annotations

import os

import pytest

from leash.pipeline.compare import pop_seeds, with_threads


def test_seeds_are_read_off_the_overrides():
    assert pop_seeds(["debug=fast", "seeds=[0,1,2]", "dpo.algo.beta=0.3"]) == (
        [0, 1, 2], ["debug=fast", "dpo.algo.beta=0.3"]
    )
    assert pop_seeds(["seeds=3,5"]) == ([3, 5], [])
    assert pop_seeds(["seed=4"]) == (None, ["seed=4"])  # one seed is the ordinary override


@pytest.mark.parametrize("bad", ["seeds=[a,b]", "seeds=[]", "seeds=[1,1]", "seeds=[-1,2]"])
def test_bad_seeds_are_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match=r"^seeds: expected"):
        pop_seeds([bad])


def test_every_stage_gets_one_thread_count(monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert with_threads(["debug=fast"], None) == ["debug=fast", f"threads={cpus}"]
    assert with_threads([], 3) == ["threads=3"]
    assert with_threads(["threads=1"], 3) == ["threads=1"]  # the user's own wins
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a cap set outside leash is the default
    assert with_threads([], None) == ["threads=3"]
    assert with_threads([], 2) == ["threads=2"]
    monkeypatch.setenv("OMP_NUM_THREADS", "many")  # not a count: ignored
    assert with_threads([], None) == [f"threads={cpus}"]
