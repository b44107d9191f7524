"""Structured-config schema: one dataclass per config group, registered in Hydra's ConfigStore.

YAML files under ``conf/`` compose; these dataclasses define what a composed config may hold.
OmegaConf checks types and enum values while composing (an unknown ``data.bad_rows`` fails with
the allowed values); :func:`validate` then rejects keys no schema declares (``+algo.betta=0.1``),
types the ``algo`` and ``trainer`` blocks, and checks the rules declared in field metadata
(``gt``/``ge``/``le``/``lt``, ``choices``, ``length``, ``rule``) and the cross-field rules;
:func:`validate_inputs` checks that local files and folders the config names exist. Every error
names the offending key, and all of it runs before torch or any model or data loads.

Each field carries a one-line docstring: it is the documentation of that config key.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key."""


def _positive(default: Any) -> Any:
    return field(default=default, metadata={"gt": 0})


def _non_negative(default: Any) -> Any:
    return field(default=default, metadata={"ge": 0})


def _fraction(default: float) -> Any:
    """A value in [0, 1)."""
    return field(default=default, metadata={"ge": 0, "lt": 1})


def _seed(default: int) -> Any:
    """A seed: numpy and torch accept 0 <= seed < 2**32."""
    return field(default=default, metadata={"ge": 0, "lt": 2**32})


# --------------------------------------------------------------------------------------- enums
class DataSource(str, Enum):
    task = "task"
    hub = "hub"
    files = "files"
    disk = "disk"


class RowFormat(str, Enum):
    auto = "auto"
    explicit = "explicit"
    implicit = "implicit"
    conversational = "conversational"


class Truncation(str, Enum):
    truncate_prompt_left = "truncate_prompt_left"
    drop = "drop"


class BadRows(str, Enum):
    skip = "skip"
    error = "error"


class Arch(str, Enum):
    gpt2 = "gpt2"
    llama = "llama"


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"
    auto = "auto"


class Scheduler(str, Enum):
    constant = "constant"
    linear = "linear"
    cosine = "cosine"


class DPOLoss(str, Enum):
    sigmoid = "sigmoid"
    robust = "robust"
    ipo = "ipo"
    hinge = "hinge"
    simpo = "simpo"


class ReferenceMode(str, Enum):
    copy = "copy"
    adapter = "adapter"
    precomputed = "precomputed"


class RewardSource(str, Enum):
    learned = "learned"
    gold = "gold"


class CriticInit(str, Enum):
    reward = "reward"
    policy = "policy"


class MemoryMode(str, Enum):
    separate = "separate"
    shared_lora = "shared_lora"


class KLEstimator(str, Enum):
    k1 = "k1"
    k2 = "k2"
    k3 = "k3"


# ---------------------------------------------------------------------------------------- data
@dataclass
class TaskConfig:
    """The built-in synthetic task with a gold reward (used when ``data.source=task``)."""

    name: str = "exact"
    """Task variant: `exact` (every response enumerable) or `long` (throughput measurements)."""
    num_topics: int = _positive(4)
    """Topic tokens; the sign of each response word's valence depends on the prompt's topic."""
    num_prompt_words: int = _positive(6)
    """Context words that follow the topic token in a prompt."""
    prompt_length: int = _positive(3)
    """Tokens in a prompt: one topic token then `prompt_length - 1` context words."""
    num_prompts: int = _positive(64)
    """Distinct prompts in the task (split between train and held-out)."""
    response_vocab_size: int = _positive(8)
    """Response words (EOS excluded)."""
    max_response_length: int = _positive(4)
    """Longest response in tokens, EOS included; longer samples are cut."""
    target_length: int = _positive(3)
    """Response length (EOS excluded) at which the length term of the gold reward peaks."""
    sft_corpus_size: int = _positive(2048)
    """SFT examples drawn from the behaviour distribution."""
    pairs_per_prompt: int = _positive(16)
    """Preference pairs sampled from the SFT policy per train prompt."""
    label_temperature: float = _non_negative(1.0)
    """Bradley-Terry temperature of the preference labels; 0 gives deterministic labels."""
    eval_fraction: float = field(default=0.25, metadata={"gt": 0, "lt": 1})
    """Fraction of the prompts held out for evaluation."""
    seed: int = _seed(0)
    """Seed of the task's vocabulary valences, prompts and behaviour distribution."""


@dataclass
class DataConfig:
    """Where preference data comes from and how it becomes token batches."""

    name: str = MISSING
    """Short name used in run names and reports."""
    source: DataSource = DataSource.task
    """`task` (built-in, generated locally), `hub`, `files` (JSON/JSONL/Parquet/CSV) or `disk`."""
    path: str | None = None
    """Hub data set name, file path or glob, or a `save_to_disk` folder (unused for `task`)."""
    subset: str | None = None
    """Hub configuration name (`datasets.load_dataset(path, subset)`)."""
    train_split: str = "train"
    """Split holding the training pairs."""
    eval_split: str | None = "test"
    """Split of held-out pairs; when the source lacks it, `eval_fraction` of train is held out."""
    eval_fraction: float = field(default=0.1, metadata={"gt": 0, "lt": 1})
    """Held-out fraction carved from the train split when the source has no eval split."""
    format: RowFormat = RowFormat.auto
    """Row format: explicit prompt, implicit (HH-RLHF shared prefix), conversational, or auto."""
    max_length: int = _positive(128)
    """Token budget of prompt + response."""
    max_prompt_length: int = _positive(64)
    """Token budget of the prompt alone."""
    truncation: Truncation = Truncation.truncate_prompt_left
    """Over-budget rows: cut the prompt's left (then the response's right), or drop the row."""
    bad_rows: BadRows = BadRows.skip
    """Malformed rows: `skip` (counted and reported) or `error` (stop the run)."""
    max_train_rows: int | None = field(default=None, metadata={"ge": 1})
    """Use at most this many training rows (after the seeded shuffle); None keeps all."""
    max_eval_rows: int | None = field(default=None, metadata={"ge": 1})
    """Use at most this many held-out rows; None keeps all."""
    batch_size: int = _positive(16)
    """Training batch size per process."""
    shuffle: bool = True
    """Shuffle training rows each epoch (seeded); off gives the same order in 1 or N processes."""
    eval_batch_size: int = _positive(32)
    """Evaluation batch size per process."""
    num_workers: int = _non_negative(0)
    """DataLoader worker processes."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """Parameters of the built-in task (only read when `source=task`)."""


# --------------------------------------------------------------------------------------- model
@dataclass
class TinyModelConfig:
    """A small randomly initialised causal LM, built locally (no download)."""

    arch: Arch = Arch.gpt2
    """Architecture family of the tiny model."""
    hidden_size: int = _positive(64)
    """Width of the residual stream."""
    num_layers: int = _positive(2)
    """Transformer blocks."""
    num_heads: int = _positive(4)
    """Attention heads (must divide `hidden_size`)."""
    max_position_embeddings: int = _positive(256)
    """Longest sequence the model accepts."""
    seed: int = _seed(0)
    """Seed of the random initialisation."""


@dataclass
class PeftConfig:
    """Optional LoRA adapter around the policy (and, for PPO, the critic)."""

    enabled: bool = False
    """Wrap the model with a LoRA adapter."""
    r: int = _positive(8)
    """LoRA rank."""
    alpha: float = _positive(16.0)
    """LoRA scaling numerator (`alpha / r` scales the update)."""
    dropout: float = _fraction(0.0)
    """Dropout on the LoRA input."""
    target_modules: Any = "all-linear"
    """Module names to adapt, or `all-linear`."""


@dataclass
class ModelConfig:
    """Which network to load for each role, and how."""

    name_or_path: str = "tiny"
    """Hugging Face hub name, local folder, or `tiny` for the locally built preset."""
    tokenizer: str | None = None
    """Tokenizer name or folder; None uses `name_or_path` (the tiny preset builds its own)."""
    dtype: DType = DType.float32
    """Parameter dtype of the loaded weights."""
    attn_implementation: str | None = field(
        default=None,
        metadata={"choices": ("eager", "sdpa", "flash_attention_2", "flex_attention")},
    )
    """`eager`, `sdpa`, `flash_attention_2` or `flex_attention`; None lets transformers choose."""
    gradient_checkpointing: bool = False
    """Trade compute for activation memory in the trained models."""
    trust_remote_code: bool = False
    """Allow model code from the hub (off unless you trust the repository)."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the `tiny` preset (ignored for hub models)."""


# ---------------------------------------------------------------------------------- algorithms
@dataclass
class AlgoConfig:
    """Fields every algorithm has: its name, AdamW, the learning-rate schedule, the step budget."""

    name: str = MISSING
    """Algorithm name: `sft`, `dpo`, `reward`, `ppo`, ..."""
    lr: float = _positive(1e-3)
    """Peak learning rate."""
    weight_decay: float = _non_negative(0.0)
    """Decoupled (AdamW) weight decay."""
    adam_betas: tuple[float, float] = field(
        default=(0.9, 0.999), metadata={"length": 2, "ge": 0, "lt": 1}
    )
    """Adam moment decay rates: two values in [0, 1)."""
    warmup_steps: int = _non_negative(0)
    """Linear warmup from 0 to `lr` over this many optimizer steps."""
    scheduler: Scheduler = Scheduler.cosine
    """Decay after warmup, down to `min_lr_ratio * lr` at `max_steps`."""
    min_lr_ratio: float = field(default=0.1, metadata={"ge": 0, "le": 1})
    """Final learning rate as a fraction of the peak (cosine and linear)."""
    max_steps: int = _positive(200)
    """Training steps of this algorithm: optimizer steps, or PPO iterations."""
    max_grad_norm: float | None = field(default=1.0, metadata={"gt": 0})
    """Clip the gradient norm at this value before each optimizer step; None disables."""


@dataclass
class SFTConfig(AlgoConfig):
    """Causal-LM loss on responses, prompt tokens masked."""

    name: str = "sft"


@dataclass
class DPOConfig(AlgoConfig):
    """The DPO family: one loss on preference pairs against a reference policy."""

    name: str = "dpo"
    loss: DPOLoss = DPOLoss.sigmoid
    """Which loss of the family: sigmoid (DPO), robust, ipo, hinge (SLiC), simpo."""
    beta: float = _positive(0.1)
    """Inverse temperature of the implicit reward `beta · log pi/pi_ref` (the KL leash)."""
    label_smoothing: float = field(default=0.0, metadata={"ge": 0, "lt": 0.5})
    """Assumed label-flip rate for cDPO (sigmoid) and robust DPO; 0 disables."""
    simpo_gamma: float = _non_negative(0.5)
    """SimPO target reward margin."""
    reference: ReferenceMode = ReferenceMode.copy
    """Reference policy: frozen `copy`, PEFT `adapter` disabled, or `precomputed` log-probs."""


@dataclass
class RewardConfig(AlgoConfig):
    """Bradley-Terry reward model on the same preference pairs."""

    name: str = "reward"
    margin: float = _non_negative(0.0)
    """Margin inside the Bradley-Terry sigmoid: `-log sigma(r_c - r_r - margin)`."""
    center_coef: float = _non_negative(0.0)
    """Weight of the `(r_c + r_r)^2` penalty that centres rewards at zero."""


@dataclass
class PPOConfig(AlgoConfig):
    """PPO-RLHF: on-policy rollouts scored by a reward model, under a per-token KL penalty.

    `max_steps` counts PPO iterations: a rollout batch of `data.batch_size` prompts x
    `samples_per_prompt`, then `ppo_epochs` passes of `num_minibatches` clipped updates; the
    Trainer counts the updates (see :func:`optimizer_steps`). `lr` is the policy's learning rate.
    """

    name: str = "ppo"
    reward: RewardSource = RewardSource.learned
    """Score rollouts with the `learned` reward model (PPO) or the task's `gold` reward (PPO-GT)."""
    critic_init: CriticInit = CriticInit.reward
    """Initialise the critic from the reward model or from the policy (SFT) weights."""
    critic_lr: float = _positive(1e-3)
    """Critic learning rate."""
    memory_mode: MemoryMode = MemoryMode.separate
    """`separate` models, or one frozen base with LoRA adapters for policy and critic."""
    samples_per_prompt: int = _positive(1)
    """Responses sampled per prompt in a rollout."""
    ppo_epochs: int = _positive(4)
    """Passes over each rollout batch."""
    num_minibatches: int = _positive(4)
    """Minibatches per pass (the rollout batch must divide exactly)."""
    clip_range: float = _positive(0.2)
    """Policy ratio clip epsilon."""
    clip_range_value: float = _positive(0.2)
    """Value clip epsilon around the rollout's values."""
    vf_coef: float = _positive(0.1)
    """Value-loss weight (shared_lora mode, where policy and critic share one optimizer)."""
    gamma: float = field(default=1.0, metadata={"ge": 0, "le": 1})
    """Discount."""
    lam: float = field(default=0.95, metadata={"ge": 0, "le": 1})
    """GAE lambda."""
    kl_coef: float = _non_negative(0.05)
    """Initial (or fixed) coefficient of the per-token KL penalty."""
    kl_estimator: KLEstimator = KLEstimator.k1
    """Per-token KL estimator in the reward: k1 (unbiased, can be negative) or k3 (>= 0)."""
    adaptive_kl: bool = False
    """Adapt the KL coefficient towards `kl_target` (Ziegler et al. 2019)."""
    kl_target: float = _positive(6.0)
    """Target sequence KL of the adaptive controller."""
    kl_horizon: int = _positive(10000)
    """Horizon of the adaptive controller, in rollouts."""
    whiten_rewards: bool = False
    """Whiten shaped rewards over the rollout batch (across processes)."""
    whiten_advantages: bool = True
    """Whiten advantages over the rollout batch (across processes)."""
    missing_eos_penalty: float | None = 1.0
    """Subtracted once from the score of a response cut without EOS; None disables."""
    entropy_coef: float = _non_negative(0.0)
    """Entropy bonus weight."""
    temperature: float = _positive(1.0)
    """Rollout sampling temperature."""
    max_new_tokens: int = _positive(64)
    """Longest rollout response (a built-in task uses its own response length limit)."""


# ---------------------------------------------------------------------------------- evaluation
@dataclass
class EvalConfig:
    """The common evaluator: every algorithm's policy sampled and scored with these settings."""

    enabled: bool = True
    """Evaluate the policy after every validation; off skips sampling (faster sweeps)."""
    num_samples: int = _positive(8)
    """Responses sampled per held-out prompt."""
    max_new_tokens: int = _positive(64)
    """Longest sampled response (a built-in task uses its own response length limit)."""
    temperature: float = _positive(1.0)
    """Sampling temperature (1 samples the policy itself)."""
    seed: int = 1234
    """Seed of the sampling stream: every evaluation sees the same random numbers."""
    max_prompts: int | None = field(default=64, metadata={"gt": 0})
    """Evaluate on at most this many held-out prompts (the first ones); None uses all."""
    batch_size: int = _positive(256)
    """Rows per generation / scoring batch."""
    table_rows: int = _non_negative(16)
    """Sampled responses kept in ``eval_samples.jsonl`` and the W&B samples table."""


# ------------------------------------------------------------------------------------- trainer
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
"""`accelerator` names Lightning accepts."""

PRECISIONS = (
    "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
    "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16",
)  # fmt: skip
"""`precision` values Lightning accepts (an int 16/32/64 arrives here as its string)."""

STRATEGIES = (
    "auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true",
    "ddp_fork", "ddp_fork_find_unused_parameters_false", "ddp_fork_find_unused_parameters_true",
    "ddp_notebook", "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true", "ddp_spawn",
    "ddp_spawn_find_unused_parameters_false", "ddp_spawn_find_unused_parameters_true",
    "deepspeed", "deepspeed_stage_1", "deepspeed_stage_2", "deepspeed_stage_2_offload",
    "deepspeed_stage_3", "deepspeed_stage_3_offload", "deepspeed_stage_3_offload_nvme", "fsdp",
    "fsdp_cpu_offload", "single_device", "single_tpu", "single_xla", "xla", "xla_debug",
)  # fmt: skip
"""`strategy` names of Lightning's registry (a test checks these lists against Lightning)."""


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _devices_problem(value: Any) -> str | None:
    """Lightning's `devices`: a count (>= 1, or -1 for all), `auto`, or a list of indices."""
    if value == "auto" or (_is_int(value) and (value >= 1 or value == -1)):
        return None
    indices = isinstance(value, list) and value and all(_is_int(i) and i >= 0 for i in value)
    if indices and len(set(value)) == len(value):
        return None
    return (
        "must be a device count (>= 1, or -1 for all), `auto`, or a list of distinct device "
        f"indices; got {value!r}"
    )


def _strategy_problem(value: Any) -> str | None:
    """A registered strategy name, or a `_target_` config of a Strategy object."""
    if isinstance(value, str) and value.lower() in STRATEGIES:
        return None
    if isinstance(value, Mapping) and "_target_" in value:
        return None
    return f"must be one of {', '.join(STRATEGIES)}, or a `_target_` config; got {value!r}"


def _batches_problem(value: Any) -> str | None:
    """An int counts batches; a float is a fraction of them, in [0, 1] (or a whole number)."""
    if isinstance(value, float) and value > 1 and not value.is_integer():
        return f"a float is a fraction of the batches and must be <= 1; got {value}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number of batches (int) or a fraction of them (float); got {value!r}"
    return None


def _interval_problem(value: Any) -> str | None:
    """`val_check_interval`: batches as for the limits, or a time `DD:HH:MM:SS` (or a dict)."""
    if isinstance(value, str) and re.fullmatch(r"\d+:\d+:\d+:\d+", value):
        return None
    if isinstance(value, Mapping):
        return None
    return _batches_problem(value)


@dataclass
class TrainerConfig:
    """The Lightning Trainer arguments a config may set (checked by :func:`validate`; the
    `trainer` block itself is passed to ``hydra.utils.instantiate`` as written)."""

    _target_: str = "lightning.Trainer"
    """The Trainer class."""
    accelerator: str = field(default="auto", metadata={"choices": ACCELERATORS})
    """Hardware: `cpu`, `gpu`, `cuda`, `mps`, `tpu`, or `auto`."""
    strategy: Any = field(default="auto", metadata={"rule": _strategy_problem})
    """Distribution: `auto`, `ddp`, `fsdp`, ... (Lightning's registry) or a `_target_` config."""
    devices: Any = field(default="auto", metadata={"rule": _devices_problem})
    """Devices per node: a count (-1 for all), `auto`, or a list of device indices."""
    num_nodes: int = _positive(1)
    """Machines."""
    precision: str | None = field(default=None, metadata={"choices": PRECISIONS})
    """Numeric precision: `32-true`, `bf16-mixed`, `16-mixed`, `bf16-true`, ...; None: 32-true."""
    max_steps: int = field(default=-1, metadata={"ge": -1})
    """Optimizer steps to train (-1: no limit); derived from the algorithm in conf/trainer."""
    max_epochs: int | None = field(default=None, metadata={"ge": -1})
    """Epochs to train (-1: no limit)."""
    val_check_interval: Any = field(default=None, metadata={"gt": 0, "rule": _interval_problem})
    """Validate every this many batches (int), fraction of an epoch (float), or time."""
    check_val_every_n_epoch: int | None = field(default=1, metadata={"ge": 1})
    """Validate every this many epochs; None validates on `val_check_interval` batches alone."""
    log_every_n_steps: int | None = _non_negative(None)
    """Log training metrics every this many steps (0: never)."""
    gradient_clip_val: float | None = _non_negative(None)
    """Clip the gradient norm at this value; derived from `algo.max_grad_norm` in conf/trainer."""
    accumulate_grad_batches: int = _positive(1)
    """Batches whose gradients are summed into one optimizer step."""
    num_sanity_val_steps: int | None = field(default=None, metadata={"ge": -1})
    """Validation batches run before training (-1: all of them)."""
    limit_train_batches: Any = field(default=None, metadata={"ge": 0, "rule": _batches_problem})
    """Training batches per epoch: a count (int) or a fraction (float); None: all."""
    limit_val_batches: Any = field(default=None, metadata={"ge": 0, "rule": _batches_problem})
    """Validation batches per check: a count (int) or a fraction (float); None: all."""
    deterministic: Any = field(default=None, metadata={"choices": (True, False, "warn")})
    """Deterministic algorithms only: true, false, or `warn`."""
    benchmark: bool | None = None
    """Let cuDNN pick the fastest convolution algorithms."""
    enable_progress_bar: bool | None = None
    """Show a progress bar."""
    enable_model_summary: bool | None = None
    """Print the model summary at the start."""
    default_root_dir: str | None = None
    """Folder for logs and checkpoints without an explicit path."""
    use_distributed_sampler: bool = True
    """Let Lightning shard the data loaders (leash shards them itself: false in conf/trainer)."""


# ----------------------------------------------------------------------------------- top level
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
    seed: int = _seed(0)
    """Global seed: data split and order, initialisation, sampling."""
    run_name: str = MISSING
    """Name of this run in logs and reports."""
    resume: bool = True
    """Resume from the run folder's last checkpoint when one exists."""
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    """How upstream artifacts (SFT policy, reward model) are built when the cache lacks them."""


ALGO_SCHEMAS: dict[str, type[AlgoConfig]] = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    # The DPO family: one schema, the variant chosen by `loss` (and its name in reports).
    "dpo": DPOConfig,
    "cdpo": DPOConfig,
    "robust_dpo": DPOConfig,
    "ipo": DPOConfig,
    "slic": DPOConfig,
    "simpo": DPOConfig,
    # PPO with the learned reward model, and PPO-GT with the task's gold reward.
    "ppo": PPOConfig,
    "ppo_gt": PPOConfig,
}


def exact_div(numerator: int, denominator: int, what: str) -> int:
    """``numerator / denominator`` when it is an integer; otherwise fail, explaining ``what``."""
    if denominator <= 0 or numerator % denominator:
        raise ValueError(f"{what}: {numerator} does not split exactly into {denominator}")
    return numerator // denominator


def updates_per_step(algo: Any) -> int:
    """Optimizer steps in one training step: a PPO iteration updates ``ppo_epochs x
    num_minibatches`` times, every other algorithm once. ``algo`` is typed or a DictConfig."""
    if ALGO_SCHEMAS.get(algo.name) is PPOConfig:
        return algo.ppo_epochs * algo.num_minibatches
    return 1


def optimizer_steps(algo: Any, iterations: int | None = None) -> int:
    """Optimizer steps in ``iterations`` training steps (default: the run's ``max_steps``): the
    Trainer's ``max_steps`` and the length of the learning-rate schedule."""
    return (algo.max_steps if iterations is None else iterations) * updates_per_step(algo)


def lightning_clip(algo: Any) -> float | None:
    """The Trainer's `gradient_clip_val`: the algorithm's norm, except for manual optimisation
    (PPO clips inside its own update, where Lightning's clipping is not allowed)."""
    return None if ALGO_SCHEMAS.get(algo.name) is PPOConfig else algo.max_grad_norm


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore (YAML files extend them through their defaults)
    and the resolvers that derive Trainer sizes from the algorithm block."""
    for name, function in (
        ("leash.optimizer_steps", optimizer_steps),
        ("leash.lightning_clip", lightning_clip),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for schema in set(ALGO_SCHEMAS.values()):  # algo/<name>.yaml extends schema/algo/<Schema>
        store.store(group="schema/algo", name=schema.__name__, node=schema)


# ---------------------------------------------------------------------------------- validation
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
    if isinstance(cfg.algo, PPOConfig):
        problems += _check_ppo(cfg, cfg.algo)
    return problems


def _check_ppo(cfg: TrainConfig, algo: PPOConfig) -> list[str]:
    """PPO's rules across fields: critic initialisation, the gold reward, minibatch sizes."""
    problems = []
    if algo.memory_mode == MemoryMode.shared_lora and algo.critic_init != CriticInit.policy:
        problems.append(
            "algo.critic_init: shared_lora's critic is an adapter on the SFT "
            "base; set algo.critic_init=policy"
        )
    if algo.reward == RewardSource.gold:
        if cfg.data.source != DataSource.task:
            problems.append("algo.reward: `gold` needs a built-in task (data=exact or long)")
        if algo.critic_init == CriticInit.reward:
            problems.append(
                "algo.critic_init: `reward` needs a learned reward model, which algo.reward=gold "
                "does not train; set algo.critic_init=policy"
            )
    rollouts = cfg.data.batch_size * algo.samples_per_prompt
    if rollouts % algo.num_minibatches:
        problems.append(
            f"algo.num_minibatches: must divide the rollout batch "
            f"(data.batch_size x algo.samples_per_prompt = {rollouts})"
        )
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
    Cross-field rules run once every value is in range.
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
    _raise_if(_check_cross_field(typed))
    return typed


# ------------------------------------------------------------------------------ local inputs
def _looks_like_path(name: str) -> bool:
    """Whether a model or data name means a local path rather than a hub id (`org/name`): it
    starts with `/`, `./`, `../` or `~`, has more than one `/`, or its first part exists here."""
    if name.startswith(("/", "./", "../", "~")) or name in (".", ".."):
        return True
    return name.count("/") > 1 or ("/" in name and Path(name.split("/")[0]).exists())


def _missing_inputs(cfg: TrainConfig) -> list[str]:
    """Local files and folders the config names that are not there, as ``"key: ..."`` lines."""
    data = cfg.data
    problems = []
    pattern = str(Path(data.path or "").expanduser())
    if data.source == DataSource.files and not glob.glob(pattern, recursive=True):
        problems.append(f"data.path: no file matches {data.path!r}")
    named = {
        "model.name_or_path": cfg.model.name_or_path,
        "model.tokenizer": cfg.model.tokenizer,
        "upstream.sft_policy": cfg.upstream.sft_policy,
        "upstream.reward_model": cfg.upstream.reward_model,
    }
    if data.source in (DataSource.hub, DataSource.disk):
        named["data.path"] = data.path
    for key, name in named.items():
        local = key == "data.path" and data.source == DataSource.disk
        if name and (local or _looks_like_path(name)) and not Path(name).expanduser().exists():
            problems.append(f"{key}: no such file or folder {name!r}")
    return problems


def validate_inputs(cfg: TrainConfig) -> None:
    """Raise ConfigError, naming keys, when a local input of a validated config is missing:
    data files (a glob must match), a `save_to_disk` folder, model or upstream folders."""
    _raise_if(_missing_inputs(cfg))
