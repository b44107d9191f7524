"""Validation of a composed config: unknown keys, field rules, cross-field rules, inputs.

Every error names the offending key, and all of it runs before torch or any model loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import math
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from leash.config.algo import (
    ALGO_SCHEMAS,
    DPOConfig,
    OnlineDPOConfig,
    PPOConfig,
    needs_critic,
    round_steps,
)
from leash.config.enums import (
    AdvantageEstimator,
    CriticInit,
    DataSource,
    DPOLoss,
    MemoryMode,
    OnlineSchedule,
    ReferenceMode,
    ReferenceUpdate,
    RewardSource,
)
from leash.config.fields import ConfigError
from leash.config.support import check_support
from leash.config.train import TrainConfig
from leash.config.trainer import TrainerConfig

_BOUNDS = {
    "gt": (lambda value, bound: value > bound, "> {}"),
    "ge": (lambda value, bound: value >= bound, ">= {}"),
    "lt": (lambda value, bound: value < bound, "< {}"),
    "le": (lambda value, bound: value <= bound, "<= {}"),
}


def check_ranges(node: Any, prefix: str = "") -> list[str]:
    """Every violation of a field's metadata rules under a dataclass instance (bounds,
    ``choices``, ``length``, ``rule``), as ``"key: message"`` lines; None is never checked."""
    problems: list[str] = []
    if not dataclasses.is_dataclass(node):
        return problems
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        key = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            problems += check_ranges(value, key + ".")
        elif value is not None:
            problems += [f"{key}: {problem}" for problem in _value_problems(value, spec.metadata)]
    return problems


def _value_problems(value: Any, rules: Mapping[str, Any]) -> list[str]:
    """What breaks the field rules ``rules`` in one value (a sequence: in each of its items)."""
    if "choices" in rules and value not in rules["choices"]:
        return [f"must be one of {', '.join(map(str, rules['choices']))}; got {value!r}"]
    problem = rules["rule"](value) if "rule" in rules else None
    if problem:
        return [problem]
    if not isinstance(value, (list, tuple)):
        return _bound_problems(value, rules)
    if "length" in rules and len(value) != rules["length"]:
        return [f"must hold exactly {rules['length']} values, got {list(value)}"]
    return [problem for item in value for problem in _bound_problems(item, rules)]


def _bound_problems(value: Any, rules: Mapping[str, Any]) -> list[str]:
    """The ``gt``/``ge``/``lt``/``le`` bounds a number breaks (non-numbers pass)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [f"must be finite, got {value}"]
    return [
        f"must be {_BOUNDS[name][1].format(bound)}, got {value}"
        for name, bound in rules.items()
        if name in _BOUNDS and not _BOUNDS[name][0](value, bound)
    ]


def unknown_keys(node: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Keys of ``node``, nested ones included, that the dataclass ``schema`` does not declare.

    OmegaConf's own check misses keys added with ``+`` (Hydra adds them with the struct flag
    off), so ``+algo.betta=0.1`` would otherwise reach training and be ignored there.
    """
    declared = typing.get_type_hints(schema)
    problems = []
    for key in node:
        if key not in declared:
            close = difflib.get_close_matches(str(key), declared, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(
                f"{prefix}{key}: unknown key ({schema.__name__} has no such field{hint})"
            )
        elif dataclasses.is_dataclass(declared[key]) and OmegaConf.is_dict(node[key]):
            problems += unknown_keys(node[key], declared[key], f"{prefix}{key}.")
    return problems


def _unknown_keys_of_job(cfg: DictConfig, algo_schema: type) -> list[str]:
    """Unknown keys anywhere in a job's config: the typed groups, `algo` and `trainer`."""
    problems = unknown_keys(cfg, TrainConfig)
    for key, schema in (("algo", algo_schema), ("trainer", TrainerConfig)):
        if not OmegaConf.is_missing(cfg, key) and OmegaConf.is_dict(cfg[key]):
            problems += unknown_keys(cfg[key], schema, f"{key}.")
    return problems


def _typed_block(key: str, schema: type, node: DictConfig) -> Any:
    """``cfg.<key>`` (interpolations resolved) as a ``schema`` instance; errors name the key."""
    values = OmegaConf.to_container(node, resolve=True)
    merged = OmegaConf.merge({key: OmegaConf.structured(schema)}, {key: values})
    return OmegaConf.to_object(merged[key])


def _check_targets(cfg: TrainConfig) -> list[str]:
    """Loggers and callbacks: a mapping of names to `_target_` configs (or null to drop one)."""
    problems = []
    for group in ("logger", "callbacks"):
        entries = getattr(cfg, group)
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            problems.append(f"{group}: must map names to `_target_` configs, got {entries!r}")
            continue
        for name, entry in entries.items():
            if entry is not None and not (isinstance(entry, Mapping) and "_target_" in entry):
                problems.append(
                    f"{group}.{name}: must be a `_target_` config or null, got {entry!r}"
                )
    return problems


def _check_cross_field(cfg: TrainConfig) -> list[str]:
    problems = []
    if cfg.data.max_prompt_length >= cfg.data.max_length:
        problems.append(
            f"data.max_prompt_length: must be < data.max_length ({cfg.data.max_length}), "
            f"got {cfg.data.max_prompt_length}"
        )
    tiny = cfg.model.tiny
    if cfg.model.name_or_path == "tiny" and tiny.hidden_size % tiny.num_heads:
        problems.append(
            f"model.tiny.num_heads: must divide model.tiny.hidden_size ({tiny.hidden_size}), "
            f"got {tiny.num_heads}"
        )
    if cfg.data.source != DataSource.task and not cfg.data.path:
        problems.append(f"data.path: required when data.source={cfg.data.source.value}")
    adapter = isinstance(cfg.algo, DPOConfig) and cfg.algo.reference == ReferenceMode.adapter
    if adapter and not cfg.peft.enabled:
        problems.append("algo.reference: `adapter` needs a LoRA policy; set peft=lora")
    if cfg.hub.push and not cfg.hub.repo_id:
        problems.append("hub.repo_id: hub.push=true needs the repository to push to "
                        "(e.g. hub.repo_id=me/leash-dpo)")
    if isinstance(cfg.algo, PPOConfig):
        problems += _check_ppo(cfg, cfg.algo)
    if isinstance(cfg.algo, OnlineDPOConfig):
        problems += _check_online_dpo(cfg, cfg.algo)
    return problems


def _check_critic(algo: PPOConfig) -> list[str]:
    """Where the critic starts (a critic-free estimator has none, so nothing to check)."""
    if not needs_critic(algo):
        return []
    problems = []
    if algo.memory_mode == MemoryMode.shared_lora and algo.critic_init != CriticInit.policy:
        problems.append(
            "algo.critic_init: shared_lora's critic is an adapter on the SFT "
            "base; set algo.critic_init=policy"
        )
    if algo.reward != RewardSource.learned and algo.critic_init == CriticInit.reward:
        problems.append(
            f"algo.critic_init: `reward` needs a learned reward model, which "
            f"algo.reward={RewardSource(algo.reward).value} does not train; set "
            f"algo.critic_init=policy"
        )
    return problems


GROUP_ESTIMATORS = frozenset({AdvantageEstimator.rloo, AdvantageEstimator.grpo})
"""Estimators whose baseline is the other samples of the same prompt."""


def _check_estimator(algo: PPOConfig) -> list[str]:
    """What the critic-free estimators need: a group of samples per prompt, and no per-token
    reward whitening (they read sequence rewards, so it would be ignored)."""
    estimator = AdvantageEstimator(algo.advantage)
    problems = []
    if estimator in GROUP_ESTIMATORS and algo.samples_per_prompt < 2:
        problems.append(
            f"algo.samples_per_prompt: algo.advantage={estimator.value} compares the samples "
            f"of one prompt, so it needs >= 2, got {algo.samples_per_prompt}"
        )
    if estimator != AdvantageEstimator.gae and algo.whiten_rewards:
        problems.append(
            f"algo.whiten_rewards: only GAE reads per-token rewards; algo.advantage="
            f"{estimator.value} uses sequence rewards, set algo.whiten_rewards=false"
        )
    return problems


def _check_reward_source(cfg: TrainConfig, algo: PPOConfig | OnlineDPOConfig) -> list[str]:
    """The reward an online method samples against must exist for the data: the gold reward
    of a built-in task, or the judge of synthetic-gold mode."""
    source = RewardSource(algo.reward)
    if source == RewardSource.gold and cfg.data.source != DataSource.task:
        return ["algo.reward: `gold` needs a built-in task (data=exact or long)"]
    if source == RewardSource.judge and not cfg.data.relabel_with:
        return ["algo.reward: `judge` scores with the judge of synthetic-gold mode; set "
                "data.relabel_with (a judge model)"]
    return []


def _check_ppo(cfg: TrainConfig, algo: PPOConfig) -> list[str]:
    """The online loop's rules across fields: the critic, the estimator, the gold reward,
    minibatch sizes."""
    problems = _check_critic(algo) + _check_estimator(algo) + _check_reward_source(cfg, algo)
    rollouts = cfg.data.batch_size * algo.samples_per_prompt
    if rollouts % algo.num_minibatches:
        problems.append(
            f"algo.num_minibatches: must divide the rollout batch "
            f"(data.batch_size x algo.samples_per_prompt = {rollouts})"
        )
    return problems


def _check_schedule(algo: OnlineDPOConfig) -> list[str]:
    """An online round is one batch and one step; an iterative schedule has its rounds, and
    its `max_steps` (rounds x steps_per_round by default) may end it early, never late."""
    if OnlineSchedule(algo.schedule) == OnlineSchedule.online:
        problems = []
        if algo.rounds is not None:
            problems.append(f"algo.rounds: schedule=online samples every step (a round is one "
                            f"step); set algo.schedule=iterative or algo.rounds=null, got "
                            f"{algo.rounds}")
        if algo.steps_per_round != 1:
            problems.append(f"algo.steps_per_round: schedule=online takes one step on each "
                            f"batch's pairs; must be 1, got {algo.steps_per_round}")
        if algo.reference_update != ReferenceUpdate.fixed:
            problems.append("algo.reference_update: `last_round` moves the reference between "
                            "rounds; it needs algo.schedule=iterative")
        return problems
    if algo.rounds is None:
        return ["algo.rounds: schedule=iterative needs a number of rounds (>= 1)"]
    total = round_steps(algo.rounds, algo.steps_per_round)
    if algo.max_steps > total:
        return [f"algo.max_steps: the schedule has algo.rounds x algo.steps_per_round = {total} "
                f"steps; got {algo.max_steps} (leave it derived, or lower it to stop early)"]
    return []


def _check_online_dpo(cfg: TrainConfig, algo: OnlineDPOConfig) -> list[str]:
    """On-policy DPO's rules: the schedule, a reward source that exists, a live reference that
    can move when asked to."""
    problems = _check_schedule(algo) + _check_reward_source(cfg, algo)
    if algo.reference == ReferenceMode.precomputed:
        problems.append("algo.reference: `precomputed` log-probs belong to a fixed pair set; "
                        "online pairs are new every round: use copy (or adapter with peft=lora)")
    if algo.reference_update == ReferenceUpdate.last_round:
        if DPOLoss(algo.loss) == DPOLoss.simpo:
            problems.append("algo.reference_update: loss=simpo reads no reference; use `fixed`")
        elif algo.reference != ReferenceMode.copy or cfg.peft.enabled:
            problems.append("algo.reference_update: `last_round` copies the policy into the "
                            "frozen reference, so it needs algo.reference=copy without peft")
    return problems


def _raise_if(problems: list[str]) -> None:
    """Raise one ConfigError listing every problem, if there is any."""
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def validate(cfg: DictConfig) -> TrainConfig:
    """Check a composed config and return it as typed objects; raise ConfigError naming keys.

    No key may be one its schema lacks, so a misspelt key fails instead of being ignored; the
    algorithm block is checked against the schema of its own `algo.name`, so a field that only
    PPO has cannot slip into a DPO run; the `trainer` block against :class:`TrainerConfig`.
    Cross-field rules and the support matrix (:mod:`leash.config.support`) run once every
    value is in range.
    """
    algo_name = cfg.algo.get("name")
    if algo_name not in ALGO_SCHEMAS:
        raise ConfigError(
            f"algo.name: unknown algorithm {algo_name!r}; one of {sorted(ALGO_SCHEMAS)}"
        )
    algo_schema = ALGO_SCHEMAS[algo_name]
    _raise_if(_unknown_keys_of_job(cfg, algo_schema))
    try:
        typed: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
        typed.algo = _typed_block("algo", algo_schema, cfg.algo)
        trainer = _typed_block("trainer", TrainerConfig, cfg.trainer)
    except Exception as error:  # omegaconf's errors carry the full key
        raise ConfigError(str(error)) from error
    _raise_if(check_ranges(typed) + check_ranges(trainer, "trainer.") + _check_targets(typed))
    _raise_if(_check_cross_field(typed) + check_support(typed.algo.name, trainer))
    return typed


# ------------------------------------------------------------------------------ local inputs
def looks_like_path(name: str) -> bool:
    """Whether a model or data name means a local path rather than a hub id (`org/name`): it
    starts with `/`, `./`, `../` or `~`, has more than one `/`, or its first part exists here."""
    if name.startswith(("/", "./", "../", "~")) or name in (".", ".."):
        return True
    return name.count("/") > 1 or ("/" in name and Path(name.split("/")[0]).exists())


DATA_FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
"""The file types ``data.source=files`` reads (by extension, see :mod:`leash.data.files`)."""


def data_path_matches(path: str) -> list[str]:
    """What a ``data.path`` (a path or a glob, ``~`` expanded) names, sorted."""
    return sorted(glob.glob(str(Path(path).expanduser()), recursive=True))


def _unusable_data_files(path: str) -> list[str]:
    """What is wrong with the files a ``data.path`` glob names, before anything reads them:
    nothing matches, a type that cannot be told, an empty or unreadable file."""
    matched = data_path_matches(path)
    if not matched:
        return [f"data.path: no file matches {path!r}"]
    problems = []
    for name in matched:
        file = Path(name)
        if file.is_dir():
            problems.append(f"data.path: {name} is a folder; name the files (e.g. {name}/*.jsonl)")
        elif file.suffix.lower() not in DATA_FILE_SUFFIXES:
            problems.append(f"data.path: cannot tell the file type of {name}; expected one of "
                            f"{list(DATA_FILE_SUFFIXES)}")
        elif not os.access(file, os.R_OK):
            problems.append(f"data.path: {name} is not readable")
        elif file.stat().st_size == 0:
            problems.append(f"data.path: {name} is empty")
    return problems


def _missing_inputs(cfg: TrainConfig) -> list[str]:
    """Local files and folders the config names that are not there, as ``"key: ..."`` lines."""
    data = cfg.data
    problems = []
    if data.source == DataSource.files:
        problems += _unusable_data_files(data.path or "")
    named = {
        "model.name_or_path": cfg.model.name_or_path,
        "model.tokenizer": cfg.model.tokenizer,
        "upstream.sft_policy": cfg.upstream.sft_policy,
        "upstream.reward_model": cfg.upstream.reward_model,
        "eval.judge": cfg.eval.judge,
    }
    if data.source in (DataSource.hub, DataSource.disk):
        named["data.path"] = data.path
    for key, name in named.items():
        local = key == "data.path" and data.source == DataSource.disk
        if name and (local or looks_like_path(name)) and not Path(name).expanduser().exists():
            problems.append(f"{key}: no such file or folder {name!r}")
    return problems


def validate_inputs(cfg: TrainConfig) -> None:
    """Raise ConfigError, naming keys, when a local input of a validated config is missing:
    data files (a glob must match), a `save_to_disk` folder, model or upstream folders."""
    _raise_if(_missing_inputs(cfg))
