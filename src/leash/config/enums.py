"""The enumerated values of config fields (OmegaConf lists them when a value is wrong)."""

from __future__ import annotations

from enum import Enum


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


class UpstreamSeed(str, Enum):
    """Which seed builds a run's upstream artifacts (see ``UpstreamConfig.seed``)."""

    per_run = "per_run"
    shared = "shared"


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
    judge = "judge"


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


class AdvantageEstimator(str, Enum):
    """How the online loop turns a scored rollout into advantages (``algo.advantage``)."""

    gae = "gae"
    rloo = "rloo"
    grpo = "grpo"
    reinforce = "reinforce"


class LossType(str, Enum):
    """How per-token policy losses become one number (TRL's ``loss_type`` names)."""

    bnpo = "bnpo"
    dapo = "dapo"
    grpo = "grpo"


class OnlineSchedule(str, Enum):
    """When on-policy DPO samples its pairs (``algo.schedule``)."""

    online = "online"
    iterative = "iterative"


class ReferenceUpdate(str, Enum):
    """Whether iterative DPO's reference stays the SFT policy or follows the last round's."""

    fixed = "fixed"
    last_round = "last_round"
