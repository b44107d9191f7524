"""What a run costs: peak memory, bytes per model role, throughput, step time, wall time, MFU.

Written at the end of fit to ``metrics.json`` in the run folder (atomically) and logged under
``resources/``, with the final logged metrics, the process's ``runtime`` (threads, versions,
device: :mod:`leash.runtime`) and, for modules that record one (every one but
PPO), the loss trend (``divergence``: start and end loss and the ``diverged`` flag, see
:mod:`leash.modules.guard`), which is also the line the console shows at the end of the run
(a warning when the run diverged). On GPU the peak is ``torch.cuda.max_memory_allocated``; on
CPU it is the peak resident set size of the process, which is why every run (and every stage of
a comparison) is its own process.
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning
import torch
from lightning.pytorch.trainer.states import TrainerFn

from leash.atomic import write_json_atomic
from leash.runtime import runtime_record

log = logging.getLogger(__name__)

# Dense bf16 peak FLOP/s of accelerators whose MFU we can report (vendor datasheets).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


@dataclass
class RoleBytes:
    """Memory held by one model role."""

    parameters: int
    """Bytes of all parameters (trainable or frozen)."""
    trainable_parameters: int
    """Bytes of trainable parameters."""
    gradients: int
    """Bytes of gradient buffers (one per trainable parameter, its dtype)."""
    optimizer_state: int
    """Bytes of optimizer state tensors (e.g. Adam's two moments)."""
    num_parameters: int
    """Parameter count."""


@dataclass
class ResourceReport:
    """The resource figures of one run (the `resources` block of metrics.json)."""

    device: str
    peak_memory_bytes: int
    peak_memory_kind: str
    wall_time_s: float
    train_time_s: float
    steps: int
    mean_step_time_s: float
    tokens: int
    samples: int
    tokens_per_s: float
    samples_per_s: float
    mfu: float | None
    roles: dict[str, RoleBytes] = field(default_factory=dict)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def role_bytes(module: torch.nn.Module, optimizer_state: dict | None) -> RoleBytes:
    """Parameter, gradient and optimizer-state bytes of one role."""
    params = list(module.parameters())
    trainable = [p for p in params if p.requires_grad]
    state_bytes = 0
    if optimizer_state:
        for p in trainable:
            for value in optimizer_state.get(p, {}).values():
                if isinstance(value, torch.Tensor):
                    state_bytes += _tensor_bytes(value)
    return RoleBytes(
        parameters=sum(_tensor_bytes(p) for p in params),
        trainable_parameters=sum(_tensor_bytes(p) for p in trainable),
        gradients=sum(_tensor_bytes(p) for p in trainable),
        optimizer_state=state_bytes,
        num_parameters=sum(p.numel() for p in params),
    )


def count_tokens(batch, pl_module=None) -> tuple[int, int]:
    """(tokens, rows) a training step processed.

    A module that makes its own data (PPO generates rollouts from a batch of prompts) reports
    them as ``step_tokens``; otherwise the real tokens of every ``*attention_mask`` field.
    """
    if getattr(pl_module, "step_tokens", None) is not None:
        return pl_module.step_tokens
    masks = [v for k, v in vars(batch).items() if k.endswith("attention_mask") and v is not None]
    return int(sum(int(m.sum()) for m in masks)), len(batch)


def training_flops_per_token(roles: dict[str, torch.nn.Module]) -> float:
    """Approximate FLOPs per processed token: 6N for trained weights, 2N for frozen forwards."""
    flops = 0.0
    for module in roles.values():
        for p in module.parameters():
            flops += (6 if p.requires_grad else 2) * p.numel()
    return flops


def device_peak_flops(device: torch.device) -> float | None:
    """Datasheet peak of the current accelerator, or None when unknown (CPUs included)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


class ResourceMetrics(lightning.Callback):
    """Measures a run's cost and writes it with the final metrics to ``metrics.json``."""

    def __init__(self, output_dir: str):
        self.output_dir = Path(output_dir)
        self._started = time.perf_counter()
        self._step_started = 0.0
        self._step_times: list[float] = []
        self._tokens = 0
        self._samples = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._step_times.append(time.perf_counter() - self._step_started)
        tokens, samples = count_tokens(batch, pl_module)
        self._tokens += tokens
        self._samples += samples

    def report(self, trainer, pl_module) -> ResourceReport:
        """The figures measured so far."""
        device = pl_module.device
        if device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
        else:
            peak, kind = peak_rss_bytes(), "cpu_peak_rss"
        train_time = sum(self._step_times)
        roles = getattr(pl_module, "roles", {"policy": pl_module})
        optimizer_state = trainer.optimizers[0].state if trainer.optimizers else None
        tokens_per_s = self._tokens / train_time if train_time else 0.0
        peak_flops = device_peak_flops(device)
        mfu = None
        if peak_flops and tokens_per_s:  # tokens_per_s is this process's, on its one device
            mfu = training_flops_per_token(roles) * tokens_per_s / peak_flops
        return ResourceReport(
            device=str(device),
            peak_memory_bytes=int(peak),
            peak_memory_kind=kind,
            wall_time_s=time.perf_counter() - self._started,
            train_time_s=train_time,
            steps=len(self._step_times),
            mean_step_time_s=train_time / len(self._step_times) if self._step_times else 0.0,
            tokens=self._tokens,
            samples=self._samples,
            tokens_per_s=tokens_per_s,
            samples_per_s=self._samples / train_time if train_time else 0.0,
            mfu=mfu,
            roles={name: role_bytes(m, optimizer_state) for name, m in roles.items()},
        )

    def on_fit_end(self, trainer, pl_module) -> None:
        self.write(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # a validate-only run (cached SFT) counts
            self.write(trainer, pl_module)

    def write(self, trainer, pl_module) -> None:
        """Log the figures and write metrics.json with them and the final logged metrics."""
        report = self.report(trainer, pl_module)
        flat = {k: v for k, v in asdict(report).items() if isinstance(v, (int, float))}
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({f"resources/{k}": v for k, v in flat.items()})
        if not trainer.is_global_zero:
            return
        final = {  # NaN/inf kept visible as null rather than dropped
            name: (float(value) if math.isfinite(float(value)) else None)
            for name, value in trainer.callback_metrics.items()
        }
        payload = {"resources": asdict(report), "metrics": final,
                   "runtime": runtime_record(pl_module.device)}
        trend = getattr(pl_module, "loss_trend", None)
        if trend is not None:
            payload["divergence"] = trend._asdict()
            (log.warning if trend.diverged else log.info)("%s", trend.describe())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.output_dir / "metrics.json", payload)
