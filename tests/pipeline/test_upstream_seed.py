"""`upstream.seed`: per run, every upstream artifact follows the seed; shared, the seeds of a
sweep share them (built with seed 0) and keep their own training noise."""

from __future__ import annotations

from composing import composer, inside_a_job
from leash.config import validate
from leash.pipeline.stages import SHARED_SEED, Stages


def stages(compose, *overrides: str) -> Stages:
    return Stages(validate(compose(list(overrides))), list(overrides))


def test_shared_upstream_artifacts_are_the_same_for_every_seed(tmp_path):
    with composer(tmp_path / "run") as compose, inside_a_job():
        per_run = [stages(compose, "algo=ppo", f"seed={seed}") for seed in (1, 2)]
        shared = [stages(compose, "algo=ppo", f"seed={seed}", "upstream.seed=shared")
                  for seed in (1, 2)]
        seed_zero = stages(compose, "algo=ppo", f"seed={SHARED_SEED}")
        for key in (Stages.source_pairs_key, Stages.reward_key):  # they compose the stages
            assert key(per_run[0]) != key(per_run[1])
            assert key(shared[0]) == key(shared[1]) == key(seed_zero)
    assert [s.upstream_seed for s in shared] == [SHARED_SEED] * 2
    assert [s.cfg.seed for s in shared] == [1, 2]  # the run's own noise keeps its seed
    assert [s.upstream_seed for s in per_run] == [1, 2]
