"""The one evaluation path: a LightningModule whose policy the common evaluator measures.

The evaluator is given to the module when it is built. After every validation epoch the module
runs it once (on the first process; the others receive the figures), adds the held-out figures
it computed itself (:meth:`EvaluatedModule.heldout_metrics`, e.g. DPO's implicit reward as a
classifier), logs them all under ``eval/`` and keeps the result in
:attr:`EvaluatedModule.last_evaluation`. Every consumer reads that object: the loggers through
``self.log``, the run-folder files and the W&B media through the callbacks.
"""

from __future__ import annotations

import dataclasses

import torch

from leash.evaluation.evaluator import Evaluation, PolicyEvaluator
from leash.modules.guard import GuardedModule


class EvaluatedModule(GuardedModule):
    """Base of every algorithm that trains a policy (``self.policy``); guarded as
    :mod:`leash.modules.guard` says.

    Args:
        evaluator: measures ``self.policy`` after each validation epoch; None evaluates nothing
            (``eval.enabled=false``).
    """

    def __init__(self, evaluator: PolicyEvaluator | None = None) -> None:
        super().__init__()
        self.evaluator = evaluator
        self.last_evaluation: Evaluation | None = None
        """The latest evaluation (first process only), with the module's own held-out figures."""

    def heldout_metrics(self) -> dict[str, torch.Tensor]:
        """``eval/*`` figures the module computed over the validation epoch, identical in every
        process (gathered); none by default."""
        return {}

    def on_validation_epoch_end(self) -> None:
        """Evaluate the policy, log every ``eval/*`` figure, keep the result."""
        if self.trainer.sanity_checking:
            return
        own = self.heldout_metrics()
        for name, value in own.items():  # identical in every process: the mean is exact
            self.log(name, value, sync_dist=True)
        if self.evaluator is None:
            return
        evaluation = None
        if self.trainer.is_global_zero:  # sample once; the other processes receive the figures
            evaluation = self.evaluator.evaluate(self.policy)
        metrics = self.trainer.strategy.broadcast(
            None if evaluation is None else evaluation.metrics, src=0
        )
        self.log_dict(metrics, sync_dist=True)
        if evaluation is not None:
            merged = {**evaluation.metrics, **{name: float(v) for name, v in own.items()}}
            self.last_evaluation = dataclasses.replace(evaluation, metrics=merged)
