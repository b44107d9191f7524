"""The one override parser: keys, routing to comparison stages, what upstream stages receive."""

from __future__ import annotations

from leash.pipeline.overrides import override_key, route_by_prefix, split_sign, upstream_overrides


def test_keys_and_signs_of_overrides():
    assert split_sign("++algo.lr=1") == ("++", "algo.lr=1")
    assert override_key("+algo.foo=1") == "algo.foo"
    assert override_key("~logger") == "logger"
    assert override_key("seed=3") == "seed"


def test_overrides_are_shared_or_routed_to_one_stage():
    routed = route_by_prefix(["model=tiny_llama", "dpo.algo.beta=0.3", "+ppo.algo.foo=1"],
                             ("sft", "ppo", "dpo"))
    assert routed["sft"] == ["model=tiny_llama"]
    assert routed["dpo"] == ["model=tiny_llama", "algo.beta=0.3"]
    assert routed["ppo"] == ["model=tiny_llama", "+algo.foo=1"]


def test_an_upstream_stage_keeps_upstream_keys_but_not_the_jobs_batching():
    job = ["algo=dpo", "algo.beta=0.3", "model=tiny_llama", "seed=2", "data.batch_size=4",
           "data.max_length=64", "peft=lora", "+trainer.limit_val_batches=1", "threads=1"]
    assert upstream_overrides(job, "sft", ["algo.lr=3e-3"]) == [
        "model=tiny_llama", "seed=2", "data.max_length=64", "+trainer.limit_val_batches=1",
        "threads=1", "algo=sft", "algo.lr=3e-3",
    ]
