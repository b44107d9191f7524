"""What a run costs: peak memory, bytes per model role, throughput, step time, wall time, MFU.

Written at the end of fit to ``metrics.json`` in the run folder (atomically) and logged under
``resources/``, with the final logged metrics, the process's ``runtime`` (threads, versions,
device: :mod:`leash.runtime`) and, for modules that record one (every one but
PPO), the loss trend (``divergence``: start and end loss and the ``diverged`` flag, see
:mod:`leash.modules.guard`), which is also the line the console shows at the end of the run
(a warning when the run diverged). On GPU the peak is ``torch.cuda.max_memory_allocated``; on
CPU it is the peak resident set size of the process from the job's start (``cpu_peak_rss``: the
high-water mark is reset when the callback is built, before any model loads, so each job of a
sweep run in one process reports its own peak, on top of what the process already held; where
the platform cannot reset it, ``cpu_peak_rss_of_process``, from the process's start). Every
stage of a comparison is its own process.

Throughput is the steady state, measured as an outside clock would: a step is timed from the
end of the previous step to its own end (``on_train_batch_end``, after a device sync on GPU), so
data loading, logging and every hook count; validation (and the evaluator it runs) does not: the
clock restarts when validation ends. The first :data:`WARMUP_STEPS` steps (allocator, lazy
initialisation) are left out of ``tokens_per_s``, ``samples_per_s`` and ``mean_step_time_s``;
a run that has no more steps than that is timed over all of them, its first step from the start
of training. ``benchmarks/dpo_vs_trl.py`` and ``rm_vs_trl.py`` check these figures against their
own step clock.
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

WARMUP_STEPS = 3
"""Training steps left out of the steady-state throughput (the module docstring)."""
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
    """Seconds of all training steps, step end to step end (validation left out)."""
    steps: int
    warmup_steps: int
    """Steps left out of the steady-state figures (0 when the run had no more than those)."""
    mean_step_time_s: float
    """Mean seconds of a steady-state step."""
    tokens: int
    """Real (unpadded) tokens of all steps."""
    samples: int
    tokens_per_s: float
    """Real tokens per second of the steady-state steps (module docstring)."""
    samples_per_s: float
    """Rows (pairs, sequences, prompts) per second of the steady-state steps."""
    mfu: float | None
    roles: dict[str, RoleBytes] = field(default_factory=dict)


_STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    """Start this process's peak resident set size afresh, at what it holds now (Linux 4.0+:
    ``/proc/self/clear_refs``), so that a job run in a process that ran others (the jobs of a
    sweep, which Hydra's basic launcher runs in one process) measures its own peak. False where
    the platform cannot: the peak then counts from the process's start."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since :func:`reset_peak_rss` (Linux's
    ``VmHWM``), or since its start where there is no such reset (macOS reports bytes)."""
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
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


def decoder_training_flops(parameters: int, layers: int, width: int, context: int) -> float:
    """FLOPs of one trained token of a decoder-only transformer: 6 per parameter (2 forward, 4
    backward) plus attention's ``12 x layers x width x context`` (query-key scores and the
    weighted sum, forward and backward), the count of Chowdhery et al. 2022 (PaLM, appendix B).
    ``context`` is the sequence length the token attends over."""
    return 6.0 * parameters + 12.0 * layers * width * context


def device_peak_flops(device: torch.device) -> float | None:
    """Datasheet peak of the current accelerator, or None when unknown (CPUs included)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


@dataclass
class _Span:
    """Steps, their seconds, tokens and rows, added up."""

    steps: int = 0
    seconds: float = 0.0
    tokens: int = 0
    samples: int = 0

    def add(self, seconds: float, tokens: int, samples: int) -> None:
        self.steps += 1
        self.seconds += seconds
        self.tokens += tokens
        self.samples += samples

    def per_s(self, count: int) -> float:
        """``count`` per second of this span (0 when it has no time)."""
        return count / self.seconds if self.seconds else 0.0


class ResourceMetrics(lightning.Callback):
    """Measures a run's cost and writes it with the final metrics to ``metrics.json``.

    Args:
        output_dir: the run folder.
        warmup_steps: steps left out of the steady-state throughput (:data:`WARMUP_STEPS`).
    """

    def __init__(self, output_dir: str, warmup_steps: int = WARMUP_STEPS):
        self.output_dir = Path(output_dir)
        self.warmup_steps = warmup_steps
        # Built with the Trainer, before any model loads: the job's own peak starts here.
        self._rss_kind = "cpu_peak_rss" if reset_peak_rss() else "cpu_peak_rss_of_process"
        self._started = time.perf_counter()
        self._last_end = self._started
        self._all = _Span()
        self._steady = _Span()

    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def _now(self, pl_module) -> float:
        if pl_module.device.type == "cuda":  # the step has ended when the device is done
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_end = self._now(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # a validate-only run (cached SFT) counts
            self.write(trainer, pl_module)
        else:  # the next step is timed from here: validation is not training
            self._last_end = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now(pl_module)
        seconds, self._last_end = now - self._last_end, now
        tokens, samples = count_tokens(batch, pl_module)
        self._all.add(seconds, tokens, samples)
        if self._all.steps > self.warmup_steps:
            self._steady.add(seconds, tokens, samples)

    def report(self, trainer, pl_module) -> ResourceReport:
        """The figures measured so far."""
        device = pl_module.device
        if device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(device), "cuda_max_memory_allocated"
        else:
            peak, kind = peak_rss_bytes(), self._rss_kind
        steady = self._steady if self._steady.steps else self._all
        roles = getattr(pl_module, "roles", {"policy": pl_module})
        optimizer_state = trainer.optimizers[0].state if trainer.optimizers else None
        tokens_per_s = steady.per_s(steady.tokens)
        peak_flops = device_peak_flops(device)
        mfu = None
        if peak_flops and tokens_per_s:  # tokens_per_s is this process's, on its one device
            mfu = training_flops_per_token(roles) * tokens_per_s / peak_flops
        return ResourceReport(
            device=str(device),
            peak_memory_bytes=int(peak),
            peak_memory_kind=kind,
            wall_time_s=time.perf_counter() - self._started,
            train_time_s=self._all.seconds,
            steps=self._all.steps,
            warmup_steps=self._all.steps - steady.steps,
            mean_step_time_s=steady.seconds / steady.steps if steady.steps else 0.0,
            tokens=self._all.tokens,
            samples=self._all.samples,
            tokens_per_s=tokens_per_s,
            samples_per_s=steady.per_s(steady.samples),
            mfu=mfu,
            roles={name: role_bytes(m, optimizer_state) for name, m in roles.items()},
        )

    def on_fit_end(self, trainer, pl_module) -> None:
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
