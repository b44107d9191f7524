"""Structured-config schema: one dataclass per config group, registered in Hydra's ConfigStore.

YAML files under ``conf/`` compose; these dataclasses define what a composed config may hold.
OmegaConf checks types and enum values while composing (an unknown ``data.bad_rows`` fails with
the allowed values); :func:`validate` then checks ranges declared in field metadata
(``gt``/``ge``/``le``/``lt``) and names the offending key. Both run before any model or data loads.

Each field carries a one-line docstring: it is the documentation of that config key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
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
    seed: int = 0
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
    max_train_rows: int | None = None
    """Use at most this many training rows (after the seeded shuffle); None keeps all."""
    max_eval_rows: int | None = None
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
    seed: int = 0
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
    attn_implementation: str | None = None
    """`eager`, `sdpa` or `flash_attention_2`; None lets transformers choose."""
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
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam moment decay rates."""
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
    """Overrides of the SFT stage, e.g. `[algo.lr=3e-3,algo.max_steps=500]`."""
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
    trainer: Any = MISSING
    """Lightning Trainer arguments (`_target_: lightning.Trainer`)."""
    logger: Any = None
    """Lightning loggers, name -> `_target_` config."""
    callbacks: Any = None
    """Lightning callbacks, name -> `_target_` config."""
    paths: PathsConfig = field(default_factory=PathsConfig)
    """Run and cache folders."""
    seed: int = 0
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


def optimizer_steps(algo: Any, iterations: int) -> int:
    """Optimizer steps in ``iterations`` training steps: PPO updates ``ppo_epochs x
    num_minibatches`` times per iteration, every other algorithm once per step."""
    if ALGO_SCHEMAS.get(algo["name"]) is PPOConfig:
        return iterations * algo["ppo_epochs"] * algo["num_minibatches"]
    return iterations


def lightning_clip(algo: Any) -> float | None:
    """The Trainer's `gradient_clip_val`: the algorithm's norm, except for manual optimisation
    (PPO clips inside its own update, where Lightning's clipping is not allowed)."""
    return None if ALGO_SCHEMAS.get(algo["name"]) is PPOConfig else algo["max_grad_norm"]


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
    """Every range violation under a dataclass instance, as ``"key: message"`` lines."""
    problems: list[str] = []
    if not dataclasses.is_dataclass(node):
        return problems
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        key = f"{prefix}{spec.name}"
        if dataclasses.is_dataclass(value):
            problems += check_ranges(value, key + ".")
            continue
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{key}: must be finite, got {value}")
            continue
        for name, bound in spec.metadata.items():
            if name in _BOUNDS:
                holds, text = _BOUNDS[name]
                if not holds(value, bound):
                    problems.append(f"{key}: must be {text.format(bound)}, got {value}")
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
        if cfg.algo.memory_mode == MemoryMode.shared_lora and cfg.algo.critic_init != "policy":
            problems.append(
                "algo.critic_init: shared_lora's critic is an adapter on the SFT "
                "base; set algo.critic_init=policy"
            )
        if cfg.algo.reward == RewardSource.gold and cfg.data.source != DataSource.task:
            problems.append("algo.reward: `gold` needs a built-in task (data=exact or long)")
        rollouts = cfg.data.batch_size * cfg.algo.samples_per_prompt
        if rollouts % cfg.algo.num_minibatches:
            problems.append(
                f"algo.num_minibatches: must divide the rollout batch "
                f"(data.batch_size x algo.samples_per_prompt = {rollouts})"
            )
    return problems


def validate(cfg: DictConfig) -> TrainConfig:
    """Check a composed config and return it as typed objects; raise ConfigError naming keys.

    The algorithm block is re-checked against the schema of its own `algo.name`, so a field that
    only PPO has cannot slip into a DPO run, and a misspelt key fails instead of being ignored.
    """
    algo_name = cfg.algo.get("name")
    if algo_name not in ALGO_SCHEMAS:
        raise ConfigError(
            f"algo.name: unknown algorithm {algo_name!r}; one of {sorted(ALGO_SCHEMAS)}"
        )
    algo_schema = OmegaConf.structured(ALGO_SCHEMAS[algo_name])
    try:
        algo = OmegaConf.merge(algo_schema, cfg.algo)
        typed: TrainConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except Exception as error:  # omegaconf's errors carry the full key
        raise ConfigError(str(error)) from error
    typed.algo = OmegaConf.to_object(algo)
    problems = check_ranges(typed) + _check_cross_field(typed)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return typed
