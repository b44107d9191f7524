"""The one evaluation path: a LightningModule whose policy the common evaluator measures.

The evaluator is given to the module when it is built. After every validation epoch the module
runs it once (on the first process; the others receive the figures), adds the held-out figures
it computed itself (:meth:`EvaluatedModule.heldout_metrics`), logs them all under ``eval/`` and
keeps the result in :attr:`EvaluatedModule.last_evaluation`. Every consumer reads that object:
the loggers through ``self.log``, the run-folder files and the W&B media through the callbacks.

Held-out pairs: every policy is also an implicit reward model, ``r(x, y) = beta · log
pi(y|x)/pi_ref(y|x)`` (DPO's reward; for the KL-regularised RL of PPO the same up to a
prompt-only term that cancels in a pair). A module that validates on the held-out preference
pairs records each batch's implicit rewards (:meth:`EvaluatedModule.record_heldout_pairs`);
:func:`implicit_rm_metrics` scores them over the whole (gathered) epoch as a classifier.
"""

from __future__ import annotations

import dataclasses

import torch

from leash.data.types import PreferenceBatch
from leash.evaluation.evaluator import Evaluation, PolicyEvaluator
from leash.modules.epoch_metrics import gather_epoch, pearson_correlation, sign_agreement
from leash.modules.guard import GuardedModule


def implicit_rm_metrics(margins: torch.Tensor, gold: torch.Tensor) -> dict[str, torch.Tensor]:
    """The implicit reward model as a classifier of held-out pairs.

    ``eval/implicit_rm_accuracy``: the fraction of pairs whose chosen response gets the higher
    implicit reward (a tie counts as wrong); where the pairs carry a gold reward,
    ``eval/implicit_rm_gold_accuracy`` (sign agreement with the gold margin,
    :func:`~leash.modules.epoch_metrics.sign_agreement`) and ``eval/implicit_rm_gold_corr``
    (Pearson correlation of the margins).

    Args:
        margins: (N,) implicit-reward margins, chosen minus rejected.
        gold: (N,) gold-reward margins, NaN where a pair has none.
    """
    metrics = {"eval/implicit_rm_accuracy": (margins > 0).float().mean()}
    agreement = sign_agreement(margins, gold)
    if agreement is not None:
        metrics["eval/implicit_rm_gold_accuracy"] = agreement
    corr = pearson_correlation(margins, gold)
    if corr is not None:
        metrics["eval/implicit_rm_gold_corr"] = corr
    return metrics


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
        self._heldout_margins: list[torch.Tensor] = []
        self._heldout_gold: list[torch.Tensor] = []
        self._heldout_rows: list[torch.Tensor] = []

    def record_heldout_pairs(
        self, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, batch: PreferenceBatch
    ) -> None:
        """Keep a validation batch's implicit-reward margins and its gold margins (NaN when the
        batch has no gold reward), for :meth:`heldout_metrics`.

        Args:
            chosen_rewards: (B,) implicit rewards of the chosen responses.
            rejected_rewards: (B,) the same for the rejected responses.
            batch: the held-out pairs they score.
        """
        margins = (chosen_rewards - rejected_rewards).detach().float()
        self._heldout_margins.append(margins)
        self._heldout_rows.append(batch.index.to(margins.device))
        if batch.chosen_gold_reward is None or batch.rejected_gold_reward is None:
            self._heldout_gold.append(torch.full_like(margins, float("nan")))
        else:
            gold = batch.chosen_gold_reward - batch.rejected_gold_reward
            self._heldout_gold.append(gold.to(margins))

    def on_validation_epoch_start(self) -> None:
        self._heldout_margins.clear()
        self._heldout_gold.clear()
        self._heldout_rows.clear()

    def gather_heldout(self, chunks: list[torch.Tensor]) -> torch.Tensor:
        """Per-batch values of this epoch's held-out pairs, one chunk per
        :meth:`record_heldout_pairs` call, gathered from every process: one value per pair,
        in row order (:func:`~leash.modules.epoch_metrics.gather_epoch`)."""
        return gather_epoch(self, chunks, self._heldout_rows)

    def heldout_metrics(self) -> dict[str, torch.Tensor]:
        """``eval/*`` figures the module computed over the validation epoch, identical in every
        process (gathered): :func:`implicit_rm_metrics` of the recorded pairs, if any."""
        if not self._heldout_margins:
            return {}
        margins = self.gather_heldout(self._heldout_margins)
        return implicit_rm_metrics(margins, self.gather_heldout(self._heldout_gold))

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
