"""The composed job config (`TrainConfig`), the evaluator block, and the ConfigStore."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from leash.config.algo import (
    ALGO_SCHEMAS,
    checkpoint_steps,
    lightning_clip,
    optimizer_steps,
    round_steps,
)
from leash.config.data import DataConfig
from leash.config.enums import UpstreamSeed
from leash.config.fields import non_negative, positive, seed_field
from leash.config.model import ModelConfig, PeftConfig
from leash.config.support import deepspeed_clip


@dataclass
class EvalConfig:
    """The common evaluator: every algorithm's policy sampled and scored with these settings."""

    enabled: bool = True
    """Evaluate the policy after every validation; off skips sampling (faster sweeps)."""
    num_samples: int = positive(8)
    """Responses sampled per held-out prompt."""
    max_new_tokens: int = positive(64)
    """Longest sampled response (a built-in task uses its own response length limit)."""
    temperature: float = positive(1.0)
    """Sampling temperature (1 samples the policy itself)."""
    seed: int = 1234
    """Seed of the sampling stream: every evaluation sees the same random numbers."""
    max_prompts: int | None = field(default=64, metadata={"gt": 0})
    """Evaluate on at most this many held-out prompts (the first ones); None uses all."""
    batch_size: int = positive(256)
    """Rows per generation / scoring batch."""
    table_rows: int = non_negative(16)
    """Sampled responses kept in ``eval_samples.jsonl`` and the W&B samples table."""
    proxy_reward: bool | None = None
    """Score samples with the learned reward model PPO optimises (`eval/rm_score`), building it
    (cached) if needed; None: on real data only. The SFT run itself never can (the reward model
    is trained from it): every later run reports the SFT samples' score as `reference_rm_score`."""
    judge: str | None = None
    """An independent reward model (hub name or folder, its own tokenizer and chat format) that
    scores every policy's samples (`eval/judge_score`) and decides `eval/win_rate`."""


@dataclass
class PathsConfig:
    """Where runs and cached artifacts go."""

    output_dir: str | None = MISSING
    """This run's folder (checkpoints, metrics.json, logs); null only in `--cfg job --resolve`."""
    cache_dir: str = MISSING
    """Artifact cache shared by runs: SFT checkpoints, generated data, reward models."""


@dataclass
class UpstreamConfig:
    """Where a run's upstream artifacts come from, and how they are built when not cached."""

    sft_policy: str | None = None
    """Start from this policy (folder or hub name) instead of the SFT stage's cached policy."""
    reward_model: str | None = None
    """Score PPO rollouts with this reward model (folder) instead of the cached reward stage."""
    sft: list[str] = field(default_factory=list)
    """Overrides of the SFT stage, each one quoted: `'upstream.sft=["algo.lr=3e-3"]'`."""
    reward: list[str] = field(default_factory=list)
    """Overrides of the reward-model stage (PPO with a learned reward)."""
    seed: UpstreamSeed = UpstreamSeed.per_run
    """`per_run`: the SFT policy, the task's pairs, their relabelling, the reward model and the
    held-out split follow this run's `seed` (seeds differ in data and in training noise);
    `shared`: they are built with seed 0 whatever `seed` says, so seeds share the same data
    and differ in training noise only (the training order, dropout, sampling)."""


_REPO_ID = re.compile(r"([\w.-]+/)?[\w.-]{1,96}")


def _repo_id_problem(value: str) -> str | None:
    """Why ``value`` is no Hub repository id (`name` or `namespace/name`), or None."""
    if _REPO_ID.fullmatch(value) and "--" not in value and ".." not in value:
        return None
    return (f"must be a Hub repository id, `name` or `namespace/name` (letters, digits, "
            f"`-`, `_`, `.`), got {value!r}")


@dataclass
class HubConfig:
    """Sharing the run's model on the Hugging Face Hub (with the token `hf auth login` saved)."""

    push: bool = False
    """Upload the saved policy or reward model folder, model card included, when the run ends."""
    repo_id: str | None = field(default=None, metadata={"rule": _repo_id_problem})
    """Hub repository to push to (`namespace/name`, created if missing); `push` needs it."""
    private: bool = True
    """Create the repository private (an existing repository keeps its visibility)."""
    revision: str | None = None
    """Branch to push to (created if missing); None pushes to `main`."""


@dataclass
class TrainConfig:
    """The composed configuration of one `leash train` job."""

    algo: Any = MISSING
    """Algorithm and its hyperparameters (schema chosen by the `algo` group option)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Model for every role, and how to load it."""
    peft: PeftConfig = field(default_factory=PeftConfig)
    """Optional LoRA adapter."""
    data: DataConfig = field(default_factory=DataConfig)
    """Preference data shared by every algorithm."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Settings of the common evaluator."""
    trainer: Any = MISSING
    """Lightning Trainer arguments (`_target_: lightning.Trainer`)."""
    logger: Any = None
    """Lightning loggers, name -> `_target_` config."""
    callbacks: Any = None
    """Lightning callbacks, name -> `_target_` config."""
    paths: PathsConfig = field(default_factory=PathsConfig)
    """Run and cache folders."""
    seed: int = seed_field(0)
    """Global seed: data split and order, initialisation, sampling."""
    run_name: str = MISSING
    """Name of this run in logs and reports."""
    resume: bool = True
    """Resume from the run folder's last checkpoint when one exists."""
    checkpoint_every: int | None = positive(None)
    """Training steps (PPO: iterations) between checkpoints; null: a fifth of the run."""
    threads: int | None = positive(None)
    """Torch intra-op threads of this run; null keeps torch's default (on CPU the metrics are
    bit-identical only at one thread count: `leash compare --threads` fixes it for every stage)."""
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    """How upstream artifacts (SFT policy, reward model) are built when the cache lacks them."""
    hub: HubConfig = field(default_factory=HubConfig)
    """Push the saved model to the Hugging Face Hub at the end of the run."""




def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (YAML files extend them through their defaults)
    and the resolvers that derive Trainer sizes from the algorithm block."""
    for name, function in (
        ("leash.optimizer_steps", optimizer_steps),
        ("leash.checkpoint_steps", checkpoint_steps),
        ("leash.lightning_clip", lightning_clip),
        ("leash.round_steps", round_steps),
        ("leash.deepspeed_clip", deepspeed_clip),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for schema in set(ALGO_SCHEMAS.values()):  # algo/<name>.yaml extends schema/algo/<Schema>
        store.store(group="schema/algo", name=schema.__name__, node=schema)
