"""The invalid-config battery: every checkable mistake stops `leash train` before anything loads.

Each invalid config must fail naming its key, without importing torch and without touching the
artifact cache. All of them are checked in one fresh process (composing.py, the checks
`leash train` runs before loading); a handful also go through a real `python -m leash train`,
which must exit 2 within seconds. Valid neighbours of the invalid values must pass, so the
checks are not simply stricter than they should be.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import NamedTuple

import pytest

from leash.config import (
    ACCELERATORS,
    PRECISIONS,
    STRATEGIES,
    AlgoConfig,
    DPOConfig,
    OnlineDPOConfig,
    PPOConfig,
    RewardConfig,
    TrainConfig,
    TrainerConfig,
)

COMPOSING = Path(__file__).resolve().parents[1] / "composing.py"


class Case(NamedTuple):
    overrides: tuple[str, ...]
    key: str
    """The key the error message must name."""


def case(*overrides: str, key: str | None = None) -> Case:
    """A case whose key is its last override's, unless given."""
    return Case(overrides, key or overrides[-1].lstrip("+~").split("=")[0])


HAND_WRITTEN = [
    # Unknown keys: added with `+` (which turns OmegaConf's own check off) or not.
    case("algo=dpo", "+algo.betta=0.1"),
    case("algo=dpo", "+algo.kl_coef=0.1"),  # a PPO field on DPO
    case("+algo.beta=0.1"),  # a DPO field on SFT
    case("algo=ppo", "+algo.loss=sigmoid"),
    case("algo=reward", "+algo.beta=0.1"),
    case("algo.bogus=1"),
    # The support matrix (leash.config.support); every cell: tests/config/test_support_matrix.py.
    case("trainer=fsdp", key="trainer.strategy"),
    case("algo=ppo", "trainer=fsdp", key="trainer.strategy"),
    case("trainer=deepspeed_zero2", "trainer.accelerator=cpu", key="trainer.accelerator"),
    case("+model.foo=1"),
    case("+model.tiny.foo=1"),
    case("+data.foo=1"),
    case("+data.task.foo=1"),
    case("+peft.foo=1"),
    case("+paths.foo=1"),
    case("+upstream.foo=1"),
    case("+trainer.foo=1"),
    case("trainer.bogus=1"),
    case("+foo=1"),
    case("+logger.foo=1"),
    case("+callbacks.foo=1"),
    case("algo=ppo", "algo.name=dpo", key="algo.reward"),  # the PPO block against DPO's schema
    case("algo.name=bogus"),
    case("~trainer", key="trainer"),
    # Local inputs that are not there.
    case("data=files", key="data.path"),
    case("data=files", "data.path=/nonexistent/pairs.jsonl"),
    case("data=files", "data.path=/tmp/leash-no-such-*.jsonl"),
    case("data.source=disk", "data.path=/nonexistent/saved"),
    case("data=hh_rlhf", "data.path=./no-such-data"),
    case("data.source=hub", key="data.path"),
    case("upstream.sft_policy=/nonexistent/policy"),
    case("upstream.sft_policy=./no-such-policy"),
    case("upstream.reward_model=../no-such-reward-model"),
    case("upstream.reward_model=runs/sft/reward_model"),  # two slashes: no hub id
    case("model.name_or_path=/nonexistent/model"),
    case('model.name_or_path="~/no-such-leash-model"'),
    case("model.tokenizer=./no-such-tokenizer"),
    # Seeds, Adam betas, row limits, enums checked by validation.
    case("seed=-1"),
    case("seed=4294967296"),
    case("model.tiny.seed=-1"),
    case("data.task.seed=-1"),
    case("algo.adam_betas=[1.5,0.999]"),
    case("algo.adam_betas=[0.9]"),
    case("algo.adam_betas=[0.9,0.99,0.999]"),
    case("algo.adam_betas=[-0.1,0.999]"),
    case("model.attn_implementation=foo"),
    case("data.max_train_rows=0"),
    case("data.max_train_rows=-5"),
    case("data.max_eval_rows=0"),
    case("algo.lr=inf"),
    case("algo.lr=nan"),
    # The trainer block.
    case("trainer.devices=abc"),
    case("trainer.devices=0"),
    case("trainer.devices=1.5"),
    case("trainer.devices=[]"),
    case("trainer.devices=[0,0]"),
    case("trainer.precision=banana"),
    case("trainer.precision=8"),
    case("trainer.accelerator=quantum"),
    case("+trainer.strategy=banana"),
    case("trainer=ddp_cpu", "trainer.strategy=dpp"),
    case("trainer.val_check_interval=0"),
    case("trainer.val_check_interval=1.5"),
    case("trainer.val_check_interval=abc"),
    case("+trainer.limit_train_batches=abc"),
    case("debug=fast", "trainer.limit_val_batches=1.5"),
    case("trainer.accumulate_grad_batches=0"),
    case("trainer.deterministic=maybe"),
    case("trainer.use_distributed_sampler=maybe"),
    case("trainer.max_steps=abc"),
    case("trainer.gradient_clip_val=-1"),
    # Enums and types, checked while composing.
    case("data.bad_rows=sometimes"),
    case("data.truncation=middle"),
    case("data.source=ftp"),
    case("data.format=xml"),
    case("model.tiny.arch=rwkv"),
    case("model.dtype=int3"),
    case("algo.scheduler=step"),
    case("algo=dpo", "algo.loss=kto"),
    case("algo=dpo", "algo.reference=none"),
    case("algo=ppo", "algo.kl_estimator=k4"),
    case("algo=ppo", "algo.reward=human"),
    case("algo=ppo", "algo.critic_init=random"),
    case("algo=ppo", "algo.memory_mode=shared"),
    case("algo=ppo", "algo.advantage=vtrace"),
    case("algo=grpo", "algo.loss_type=token"),
    case("algo=dpo", "+algo.advantage=rloo"),  # an online-loop field on DPO
    case("algo.lr=abc"),
    case("data.batch_size=1.5"),
    case("peft.enabled=maybe"),
    # Rules across fields.
    case("data.max_prompt_length=16"),  # not below data.max_length (16)
    case("model.tiny.num_heads=3"),  # does not divide hidden_size (64)
    case("model.tiny.num_heads=0"),
    case("algo=dpo", "algo.reference=adapter", key="algo.reference"),  # no LoRA policy
    case("algo=ppo", "algo.memory_mode=shared_lora", key="algo.critic_init"),
    case("algo=ppo_gt", "algo.critic_init=reward"),  # gold reward: no reward model to start from
    case("algo=ppo_gt", "data=hh_rlhf", key="algo.reward"),  # gold reward needs a task
    case("algo=ppo", "data.batch_size=3", key="algo.num_minibatches"),  # 3 x 2 rollouts / 4
    case("algo=ppo", "algo.num_minibatches=0"),
    # The critic-free estimators: RLOO and GRPO compare the samples of one prompt.
    case("algo=rloo", "algo.samples_per_prompt=1"),
    case("algo=grpo", "algo.samples_per_prompt=1"),
    case("algo=ppo", "algo.advantage=rloo", "algo.samples_per_prompt=1"),
    case("algo=rloo", "algo.whiten_rewards=true"),  # only GAE reads per-token rewards
    # On-policy and iterative DPO: the schedule, the reward source, a reference that can move.
    case("algo=online_dpo", "algo.schedule=weekly"),
    case("algo=iterative_dpo", "algo.reference_update=every_step"),
    case("algo=online_dpo", "algo.reward=human"),
    case("algo=dpo", "+algo.rounds=3"),  # an online field on offline DPO
    case("algo=online_dpo", "+algo.advantage=rloo"),  # a PPO field on online DPO
    case("algo=online_dpo", "data=hh_rlhf", "algo.reward=gold"),  # gold reward needs a task
    case("algo=iterative_dpo", "algo.reward=gold", "data=hh_rlhf", key="algo.reward"),
    case("algo=iterative_dpo", "algo.rounds=null"),
    case("algo=iterative_dpo", "algo.max_steps=1000"),  # more steps than the rounds hold
    case("algo=online_dpo", "algo.rounds=3"),  # an online round is one step
    case("algo=online_dpo", "algo.steps_per_round=2"),
    case("algo=online_dpo", "algo.reference_update=last_round"),
    case("algo=online_dpo", "algo.reference=precomputed"),
    case("algo=online_dpo", "algo.reference=adapter"),  # no LoRA policy
    case("algo=iterative_dpo", "peft=lora", "algo.reference=adapter",
         "algo.reference_update=last_round"),  # the adapter-disabled base cannot move
    case("algo=iterative_dpo", "peft=lora", "algo.reference_update=last_round"),
    case("algo=iterative_dpo", "algo.loss=simpo", "algo.reference_update=last_round"),
    case("algo=online_dpo", "algo.reward=judge"),  # no judge: data.relabel_with is unset
    case("algo=rloo", "data=hh_rlhf", "algo.reward=judge"),
    case("algo=ppo", "data=hh_rlhf", "data.relabel_with=org/judge", "algo.reward=judge",
         key="algo.critic_init"),  # ppo.yaml's critic starts from a learned reward model
    # Pushing to the Hub: a repository to push to, spelt as the Hub allows.
    case("hub.push=true", key="hub.repo_id"),
    case("hub.repo_id=me/x/y"),
]

_BREAK = {"gt": lambda b: b, "ge": lambda b: b - 1, "lt": lambda b: b, "le": lambda b: b + 1}
"""A value just outside each kind of bound."""


def _bound_cases(
    schema: type,
    prefix: str,
    choices: tuple[str, ...] = (),
    sign: str = "",
    skip: set = frozenset(),
):
    """One case per bound declared in ``schema``, nested dataclasses included (not the fields
    in ``skip``, nor the fixed-length ones, which have hand-written cases)."""
    hints = typing.get_type_hints(schema)
    for spec in dataclasses.fields(schema):
        key = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(hints[spec.name]):
            yield from _bound_cases(hints[spec.name], key + ".", choices, sign)
        elif spec.name not in skip and "length" not in spec.metadata:
            for bound in sorted(spec.metadata.keys() & _BREAK.keys()):
                value = _BREAK[bound](spec.metadata[bound])
                yield Case((*choices, f"{sign}{key}={value}"), key)


ALGO_FIELDS = {spec.name for spec in dataclasses.fields(AlgoConfig)}
DPO_FIELDS = {spec.name for spec in dataclasses.fields(DPOConfig)}
FROM_SCHEMA = [
    *_bound_cases(TrainConfig, ""),
    *_bound_cases(AlgoConfig, "algo."),
    *_bound_cases(DPOConfig, "algo.", ("algo=dpo",), skip=ALGO_FIELDS),
    *_bound_cases(RewardConfig, "algo.", ("algo=reward",), skip=ALGO_FIELDS),
    *_bound_cases(PPOConfig, "algo.", ("algo=ppo",), skip=ALGO_FIELDS),
    *_bound_cases(OnlineDPOConfig, "algo.", ("algo=iterative_dpo",), skip=DPO_FIELDS),
    *_bound_cases(TrainerConfig, "trainer.", sign="++"),  # ++: set whether conf/ has it or not
]
INVALID = list(dict.fromkeys(HAND_WRITTEN + FROM_SCHEMA))

VALID = [
    ("seed=4294967295", "model.tiny.seed=0", "data.task.seed=7"),
    ("algo.adam_betas=[0.0,0.999]", "model.attn_implementation=sdpa", "data.max_train_rows=1"),
    ("trainer.devices=[0,1]", "trainer.precision=16", "trainer.val_check_interval=0.5"),
    (
        "trainer.devices=-1",
        "trainer.precision=bf16-mixed",
        "trainer.val_check_interval=00:00:05:00",
    ),
    ("debug=fast", "trainer.limit_val_batches=2.0", "+trainer.strategy=ddp_spawn"),
    ("trainer=ddp_cpu", "trainer.strategy=DDP", "trainer.deterministic=warn"),
    ("trainer=deepspeed_zero2", "eval.enabled=false", "logger=none"),
    ("upstream.sft_policy=org/name", "upstream.reward_model=./reward_model"),
    ("model=gpt2", "model.tokenizer=org/tokenizer"),
    ("data=files", "data.path=pairs-*.jsonl"),
    ("data.source=disk", "data.path=./saved", "algo=dpo", "peft=lora", "algo.reference=adapter"),
    ("algo=ppo", "algo.memory_mode=shared_lora", "algo.critic_init=policy", "peft=lora"),
    # No critic, so critic_init=reward (ppo.yaml's) is not checked with gold or shared_lora.
    ("algo=rloo", "algo.reward=gold"),
    ("algo=grpo", "algo.memory_mode=shared_lora", "peft=lora"),
    ("algo=reinforce", "algo.samples_per_prompt=1"),
    ("algo=ppo", "algo.advantage=grpo", "algo.samples_per_prompt=2", "algo.loss_type=dapo"),
    ("algo=online_dpo", "algo.reward=gold", "algo.loss=ipo"),
    ("algo=online_dpo", "data=hh_rlhf", "peft=lora", "algo.reference=adapter"),
    ("algo=iterative_dpo", "algo.rounds=2", "algo.steps_per_round=5",
     "algo.reference_update=last_round"),
    ("algo=iterative_dpo", "debug=fast"),  # max_steps below the schedule's: stops early
    ("algo=iterative_dpo", "algo.loss=simpo", "peft=lora", "algo.reference=adapter"),
    ("algo=online_dpo", "data=hh_rlhf", "data.relabel_with=org/judge", "algo.reward=judge"),
    ("algo=rloo", "data=hh_rlhf", "data.relabel_with=org/judge", "algo.reward=judge"),
    ("hub.push=true", "hub.repo_id=me/leash-dpo_0.3", "hub.revision=beta"),
]
"""Neighbours of the invalid values that `leash train` accepts."""


def names(message: str, key: str) -> bool:
    """Whether an error message names ``key`` itself (not merely a longer key ending in it)."""
    return re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message) is not None


@pytest.fixture(scope="module")
def battery(tmp_path_factory) -> dict:
    """Every case checked in one fresh process, in a folder holding the valid cases' inputs."""
    folder = tmp_path_factory.mktemp("battery")
    (folder / "reward_model").mkdir()
    (folder / "saved").mkdir()
    (folder / "pairs-0.jsonl").write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    cases = [list(c.overrides) for c in INVALID] + [list(v) for v in VALID]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(COMPOSING)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        cwd=folder,
        env={
            **os.environ,
            "LEASH_CACHE_DIR": str(folder / "cache"),
            "LEASH_OUTPUT_DIR": str(folder / "outputs"),
        },
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout)
    report.update(folder=folder, seconds=time.perf_counter() - started)
    return report


def test_the_battery_holds_at_least_60_distinct_invalid_configs():
    assert len(INVALID) == len({c.overrides for c in INVALID}) >= 60
    assert len(FROM_SCHEMA) > 40  # every bound of the schema has its case


@pytest.mark.parametrize(
    "number", range(len(INVALID)), ids=[" ".join(c.overrides) for c in INVALID]
)
def test_invalid_config_fails_naming_its_key(battery, number):
    error = battery["errors"][number]
    assert error is not None, "accepted"
    assert names(error, INVALID[number].key), error


@pytest.mark.parametrize("number", range(len(VALID)), ids=[" ".join(v) for v in VALID])
def test_valid_neighbour_passes(battery, number):
    assert battery["errors"][len(INVALID) + number] is None


def test_no_check_imports_torch_or_touches_the_cache(battery):
    assert not battery["torch_imported"]
    assert not (battery["folder"] / "cache").exists()


CLI_CASES = [
    case("algo=dpo", "+algo.betta=0.1"),
    case("seed=-1"),
    case("trainer.devices=abc"),
    case("trainer.val_check_interval=0"),
    case("data=files", "data.path=/nonexistent/*.jsonl"),
    case("upstream.sft_policy=/nonexistent/policy"),
]


@pytest.mark.parametrize("checked", CLI_CASES, ids=[" ".join(c.overrides) for c in CLI_CASES])
def test_leash_train_exits_2_in_seconds_naming_the_key(isolated_run, checked):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", *checked.overrides],
        capture_output=True, text=True, timeout=120, cwd=isolated_run,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert names(result.stderr, checked.key), result.stderr
    assert not (isolated_run / "cache").exists()
    assert time.perf_counter() - started < 20  # a Python start-up, no torch import


def test_trainer_names_are_lightnings():
    """The accelerator, precision and strategy names validation accepts are Lightning's own."""
    from lightning.fabric.connector import _PRECISION_INPUT
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    assert set(ACCELERATORS) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert set(STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}
    accepted = {
        str(v) for literal in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(literal)
    }
    assert set(PRECISIONS) == accepted
