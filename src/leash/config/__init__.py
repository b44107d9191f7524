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
from leash.config.algo import (
    ALGO_SCHEMAS,
    AlgoConfig,
    DPOConfig,
    OnlineDPOConfig,
    PPOConfig,
    RewardConfig,
    SFTConfig,
    exact_div,
    lightning_clip,
    needs_critic,
    optimizer_steps,
    round_steps,
    updates_per_step,
)
from leash.config.data import (
    DataConfig,
    TaskConfig,
)
from leash.config.enums import (
    AdvantageEstimator,
    Arch,
    BadRows,
    CriticInit,
    DataSource,
    DPOLoss,
    DType,
    KLEstimator,
    LossType,
    MemoryMode,
    OnlineSchedule,
    ReferenceMode,
    ReferenceUpdate,
    RewardSource,
    RowFormat,
    Scheduler,
    Truncation,
    UpstreamSeed,
)
from leash.config.fields import (
    ConfigError,
)
from leash.config.model import (
    ModelConfig,
    PeftConfig,
    TinyModelConfig,
)
from leash.config.train import (
    EvalConfig,
    PathsConfig,
    TrainConfig,
    UpstreamConfig,
    register_configs,
)
from leash.config.trainer import (
    ACCELERATORS,
    PRECISIONS,
    STRATEGIES,
    TrainerConfig,
)
from leash.config.validation import (
    check_ranges,
    unknown_keys,
    validate,
    validate_inputs,
)

__all__ = [
    "ACCELERATORS",
    "ALGO_SCHEMAS",
    "AdvantageEstimator",
    "AlgoConfig",
    "Arch",
    "BadRows",
    "ConfigError",
    "CriticInit",
    "DPOConfig",
    "DPOLoss",
    "DType",
    "DataConfig",
    "DataSource",
    "EvalConfig",
    "KLEstimator",
    "LossType",
    "MemoryMode",
    "ModelConfig",
    "OnlineDPOConfig",
    "OnlineSchedule",
    "PPOConfig",
    "PRECISIONS",
    "PathsConfig",
    "PeftConfig",
    "ReferenceMode",
    "ReferenceUpdate",
    "RewardConfig",
    "RewardSource",
    "RowFormat",
    "SFTConfig",
    "STRATEGIES",
    "Scheduler",
    "TaskConfig",
    "TinyModelConfig",
    "TrainConfig",
    "TrainerConfig",
    "Truncation",
    "UpstreamSeed",
    "UpstreamConfig",
    "check_ranges",
    "exact_div",
    "lightning_clip",
    "needs_critic",
    "optimizer_steps",
    "register_configs",
    "round_steps",
    "unknown_keys",
    "updates_per_step",
    "validate",
    "validate_inputs",
]
