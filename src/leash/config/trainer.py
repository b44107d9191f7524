"""Schema of the `trainer` block: the Lightning Trainer arguments a config may set."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from leash.config.fields import non_negative, positive

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
    num_nodes: int = positive(1)
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
    log_every_n_steps: int | None = non_negative(None)
    """Log training metrics every this many steps (0: never)."""
    gradient_clip_val: float | None = non_negative(None)
    """Clip the gradient norm at this value; derived from `algo.max_grad_norm` in conf/trainer."""
    accumulate_grad_batches: int = positive(1)
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
