"""Every algorithm guards its numbers: a non-finite value stops the run, a loss that ends far
above its start is flagged, and every run is validated (so evaluated) once at its end.

Non-finite values. :func:`raise_if_non_finite` raises :class:`NonFiniteError` naming where
(algorithm and step) and which quantities hold NaN or inf, on every process at once: each
process's flags are summed through the strategy (one all-reduce of a scalar, so processes may
watch different names) and copied to the host together (one device-to-host sync per check).
PPO checks its rollout, advantages and minibatch losses itself (:mod:`leash.modules.ppo`);
:class:`GuardedModule` checks what the automatic-optimisation modules (SFT, reward model, DPO
family) :meth:`~GuardedModule.watch` during the step, and every module's gradient norm, in
``on_before_optimizer_step``: after backward, before gradient clipping and the optimizer step.
The error leaves before ``on_train_batch_end``, where ``ModelCheckpoint`` saves, so the last
checkpoint on disk predates the bad step (keep ``ModelCheckpoint(save_on_exception=False)``,
Lightning's default). Under ``16-mixed`` the gradient scaler skips steps with inf gradients by
design, so the gradients are not checked there. Gradient clipping by norm reuses the norm the
check computed (one norm per step, not two) where Lightning's own precision plugin clips.

Logging. Every step is checked, but the modules compute and log their training metrics only on
the steps whose metrics Lightning hands to the loggers (:meth:`GuardedModule.logs_this_step`):
on Lightning 2.6 each ``self.log`` call costs about a millisecond on CPU (it deep-copies its
metadata), a fifth of a step at the tiny preset when seven metrics were logged every step.

Divergence. The loss of every training step is kept on the device (the first and the latest
:data:`TREND_WINDOW` only, no sync); at the end of training :class:`LossTrend` compares the
median of the first window with the median of the last (each averaged over processes) with
:func:`diverged`. PPO's losses are not recorded: its policy loss is a clipped surrogate of
whitened advantages whose level says nothing about divergence.

The end of the run. On the last optimizer step the module sets ``trainer.should_stop``, on which
Lightning runs the validation loop (and so the evaluator) once, unless this step validates
anyway, so a run shorter than ``val_check_interval`` is still evaluated, and never twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

import lightning
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType

from leash.losses.ppo import SumFn

PLAIN_CLIPPING = frozenset({Precision.clip_gradients, MixedPrecision.clip_gradients})
"""Precision plugins' ``clip_gradients`` that clip ``p.grad`` of the optimizer's parameters
in place (not DeepSpeed's, which clips inside its engine), so the guard's norm can be reused
(where ``clip_grad_by_norm`` is Lightning's too: FSDP's refuses)."""
TREND_WINDOW = 5
"""Losses whose median is the start (the first ones) and the end (the last ones) of a run."""


class NonFiniteError(RuntimeError):
    """A training quantity became NaN or infinite; the message names the step and the quantity."""


def non_finite(value: torch.Tensor) -> torch.Tensor:
    """True (a 0-dim bool tensor, on the value's device) when any entry is NaN or infinite."""
    return ~torch.isfinite(value.detach()).all()


def raise_if_non_finite(where: str, flags: Mapping[str, torch.Tensor], sum_fn: SumFn) -> None:
    """Raise NonFiniteError if any flag is set on any process; every process raises together.

    Args:
        where: the algorithm and step, the start of the message.
        flags: quantity name -> 0-dim bool tensor (:func:`non_finite`), all on one device.
        sum_fn: sums a tensor over processes; every process must call this together.
    """
    if not flags:
        return
    local = torch.stack(list(flags.values())).float()
    values = torch.cat([local, sum_fn(local.sum().reshape(1))]).tolist()
    if values[-1] == 0:
        return
    bad = [name for name, flag in zip(flags, values[:-1], strict=True) if flag] or [
        "values on another process"
    ]
    raise NonFiniteError(
        f"{where}: non-finite {', '.join(bad)}; stopped before the next optimizer step "
        "(checkpoints saved so far predate it)"
    )


def check_finite(where: str, sum_fn: SumFn, **quantities: torch.Tensor) -> None:
    """Raise NonFiniteError if any quantity holds NaN/inf on any process (all raise)."""
    raise_if_non_finite(where, {name: non_finite(v) for name, v in quantities.items()}, sum_fn)


# ---------------------------------------------------------------------------------- divergence
def diverged(start: float, end: float) -> bool:
    """The rule: the end loss is more than ``max(|start|, 1)`` above the start loss.

    That is at least double a start above 1 (SFT's cross-entropy), or more than one nat above a
    smaller one (DPO, cDPO and the reward model start at ln 2 = 0.693: flagged above 1.693).
    """
    return end > start + max(abs(start), 1.0)


class LossTrend(NamedTuple):
    """Where a run's training loss started and ended, and whether it diverged."""

    loss_start: float
    """Median of the first :data:`TREND_WINDOW` training losses (averaged over processes)."""
    loss_end: float
    """Median of the last :data:`TREND_WINDOW` training losses (averaged over processes)."""
    steps: int
    """Training losses recorded (micro-batches; a resumed run continues its checkpoint's count)."""
    diverged: bool
    """:func:`diverged` of the two."""

    def describe(self) -> str:
        """One console line: the figures, and a warning when the run diverged."""
        figures = (
            f"train/loss {self.loss_start:.4g} -> {self.loss_end:.4g} (medians of the first and "
            f"last {min(TREND_WINDOW, self.steps)} of {self.steps} steps)"
        )
        if self.diverged:
            return (
                f"DIVERGED: {figures}: the end is more than max(|start|, 1) above the start; "
                "do not trust this run's model (metrics.json: divergence.diverged=true)"
            )
        return f"{figures}: not diverged"


class LossHistory:
    """The first and the latest :data:`TREND_WINDOW` training losses, kept on their device."""

    def __init__(self) -> None:
        self.first: list[torch.Tensor] = []
        self.last: deque[torch.Tensor] = deque(maxlen=TREND_WINDOW)
        self.steps = 0

    def add(self, loss: torch.Tensor) -> None:
        """Record one step's loss (detached; no device-to-host copy)."""
        loss = loss.detach().float()
        if len(self.first) < TREND_WINDOW:
            self.first.append(loss)
        self.last.append(loss)
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        """The recorded losses as floats, for the resume checkpoint."""
        return {"first": torch.stack(self.first).tolist() if self.first else [],
                "last": torch.stack(list(self.last)).tolist() if self.last else [],
                "steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any], device: torch.device) -> None:
        """Continue the history a checkpoint holds (so a resumed run's trend is the whole run's)."""
        self.first = [torch.tensor(loss, device=device) for loss in state["first"]]
        self.last = deque((torch.tensor(loss, device=device) for loss in state["last"]),
                          maxlen=TREND_WINDOW)
        self.steps = state["steps"]

    def trend(self, mean_fn: SumFn) -> LossTrend | None:
        """The run's :class:`LossTrend` (start and end averaged by ``mean_fn`` over processes,
        which every process must call together), or None when no loss was recorded."""
        if not self.steps:
            return None
        first, last = torch.stack(self.first), torch.stack(list(self.last))
        medians = torch.stack([first.median(), last.median()])  # the lower middle one if even
        start, end = mean_fn(medians).tolist()
        return LossTrend(start, end, self.steps, diverged(start, end))


# ------------------------------------------------------------------------------------ module
class GuardedModule(lightning.LightningModule):
    """Base of every leash module: the finite guard, the loss trend and the end-of-run
    validation of the module docstring.

    A subclass calls :meth:`watch` with its training metrics in ``training_step`` (PPO checks
    its own instead) and holds its configuration as ``self.algo`` (its ``name`` starts the
    error message). Subclasses overriding a hook used here call ``super()``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._watched: dict[str, torch.Tensor] = {}
        self._grad_norm: torch.Tensor | None = None
        self._losses = LossHistory()
        self.loss_trend: LossTrend | None = None
        """The run's loss trend, set at the end of training (None for PPO, or before the end)."""

    def _sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes (the strategy's all-reduce; the identity in one process)."""
        return self.trainer.strategy.reduce(tensor, reduce_op="sum")

    def _mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean over processes (the identity in one process)."""
        return self.trainer.strategy.reduce(tensor, reduce_op="mean")

    def share_of_processes(self, count: torch.Tensor | float) -> torch.Tensor:
        """``processes x`` this process's share of a count summed over every process (exactly 1
        in one process; 0 on every process when the total is 0). A loss averaged over this
        process's own items (tokens, pairs) times its share is, once DDP averages the processes'
        gradients, the mean over every process's items: the loss one process takes of the whole
        batch. A collective: every process calls it, with or without items."""
        count = torch.as_tensor(count, dtype=torch.float32, device=self.device)
        total = self._sum(count.detach().clone())
        return count * self.trainer.world_size / total.clamp(min=1)

    def guard_where(self) -> str:
        """The start of a NonFiniteError message: the algorithm and the optimizer step about to
        be taken (``global_step``, the step the loggers record this step's metrics at)."""
        return f"{self.algo.name} step {self.global_step}"

    def watch(self, metrics: Mapping[str, torch.Tensor], loss: str = "train/loss") -> None:
        """Check these training metrics before the next optimizer step; record ``metrics[loss]``
        for the loss trend. Several calls per optimizer step (gradient accumulation) combine."""
        for name, value in metrics.items():
            flag = non_finite(value)
            self._watched[name] = flag if name not in self._watched else self._watched[name] | flag
        self._losses.add(metrics[loss])

    def logs_this_step(self) -> bool:
        """Whether Lightning hands this training step's metrics to the loggers: every
        ``log_every_n_steps`` optimizer steps, at the run's last step and at an epoch's last
        batch. Modules compute and log their training metrics only then (module docstring)."""
        trainer = self.trainer
        step, every = trainer.global_step + 1, trainer.log_every_n_steps
        return ((every > 0 and step % every == 0) or 0 < trainer.max_steps <= step
                or trainer.is_last_batch)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Raise NonFiniteError if a watched metric or the gradient norm is NaN/inf anywhere."""
        flags, self._watched = self._watched, {}
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        self._grad_norm = None
        if grads and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            self._grad_norm = torch.nn.utils.get_total_norm(grads)
            flags["grad_norm"] = non_finite(self._grad_norm)
        raise_if_non_finite(self.guard_where(), flags, self._sum)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer,
                                    gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by norm with the norm :meth:`on_before_optimizer_step` computed, where the
        precision plugin clips the parameters' gradients in place; otherwise as Lightning does.
        The same norm of the same gradients: the update is bit-identical."""
        norm, self._grad_norm = self._grad_norm, None
        algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
        plugin = type(self.trainer.precision_plugin)
        if (norm is None or not gradient_clip_val or algorithm != GradClipAlgorithmType.NORM
                or plugin.clip_gradients not in PLAIN_CLIPPING
                or plugin.clip_grad_by_norm is not Precision.clip_grad_by_norm):
            super().configure_gradient_clipping(optimizer, gradient_clip_val,
                                                gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the last optimizer step, stop: Lightning then validates once (if this step did
        not already), so every run is evaluated at its end."""
        trainer = self.trainer
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the loss history in every checkpoint, so a resumed run's trend is exact."""
        checkpoint["leash_loss_history"] = self._losses.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Continue the loss history of the checkpoint (absent in checkpoints of older runs)."""
        if "leash_loss_history" in checkpoint:
            self._losses.load_state_dict(checkpoint["leash_loss_history"], self.device)

    def on_train_end(self) -> None:
        """Compare the end of the training loss with its start (every process takes part)."""
        self.loss_trend = self._losses.trend(self._mean)
