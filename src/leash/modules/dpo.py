"""The DPO family (sigmoid/cDPO, robust, IPO, hinge, SimPO) as one LightningModule.

Per batch: one concatenated chosen + rejected forward of the policy, the reference log-probs
from the configured strategy (:mod:`leash.modules.reference`), and ``preference_loss``. The
training loss is the **mean over pairs**: each pair's loss depends on summed (not averaged)
token log-probs, so a batch of N pairs and k accumulated micro-batches of N/k pairs give the
same loss and gradients (Lightning divides each micro-batch loss by k). A sum over pairs would
not: the accumulated gradient would be 1/k of the full batch's.

Validation also scores the implicit reward model ``beta · log pi/pi_ref`` (``beta · log pi /
length`` for SimPO) on the held-out pairs, over the whole epoch: ``eval/implicit_rm_accuracy``,
and against the gold reward where the batch carries one.
"""

from __future__ import annotations

from typing import NamedTuple

import lightning
import torch

from leash.config import DPOConfig, DPOLoss
from leash.data.types import PreferenceBatch
from leash.losses.preference import preference_loss
from leash.modules.optim import build_optimizer
from leash.modules.reference import build_reference, concatenate_pairs, pair_logps
from leash.modules.reward import gather_epoch, pearson_correlation, sign_agreement


class DPOStep(NamedTuple):
    """Per-pair quantities of one DPO-family forward."""

    losses: torch.Tensor
    """(B,) loss of each pair (with grad); the training loss is its mean."""
    chosen_rewards: torch.Tensor
    """(B,) implicit reward of the chosen response, detached."""
    rejected_rewards: torch.Tensor
    """(B,) implicit reward of the rejected response, detached."""
    chosen_logps: torch.Tensor
    """(B,) summed policy log-probs of the chosen response, detached."""
    rejected_logps: torch.Tensor
    """(B,) summed policy log-probs of the rejected response, detached."""


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every ``nn.Dropout`` probability to 0 (TRL's DPO default).

    The implicit reward compares two forward passes; dropout noise in either would make it
    non-zero at step 0 and make the adapter-disabled reference stochastic.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def step_metrics(step: DPOStep) -> dict[str, torch.Tensor]:
    """Batch means of the DPO metric vocabulary (the definitions TRL logs)."""
    chosen, rejected = step.chosen_rewards, step.rejected_rewards
    return {
        "loss": step.losses.detach().mean(),
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/accuracies": (chosen > rejected).float().mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "logps/chosen": step.chosen_logps.mean(),
        "logps/rejected": step.rejected_logps.mean(),
    }


class DPOModule(lightning.LightningModule):
    """Trains ``policy`` with the DPO-family loss ``algo.loss`` against a reference policy.

    Args:
        policy: the causal LM being trained (a PEFT model for ``algo.reference=adapter``).
        reference: a frozen copy for ``algo.reference=copy``; None for ``adapter``,
            ``precomputed`` (batches carry ``reference_*_logps``) and for SimPO.
        algo: the loss, beta, smoothing, SimPO margin, reference mode and optimizer settings.
        allowed_token_ids: (A,) the policy's support on a built-in task (its response words +
            EOS); log-probs are those of the restricted policy, the one that is sampled and
            enumerated. None uses the whole vocabulary.
    Dropout is disabled in both networks (see :func:`disable_dropout`).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        reference: torch.nn.Module | None,
        algo: DPOConfig,
        allowed_token_ids: torch.Tensor | None = None,
    ):
        super().__init__()
        self.policy = policy
        self.reference = reference
        self.algo = algo
        self.allowed_token_ids = allowed_token_ids
        self._reference_logps = build_reference(
            algo.reference, algo.loss, policy, reference, allowed_token_ids
        )
        for model in self.roles.values():
            disable_dropout(model)
        self._val_margins: list[torch.Tensor] = []
        self._val_gold_margins: list[torch.Tensor] = []

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """The networks this algorithm holds, by role (read by the resource metrics)."""
        if self.reference is None:
            return {"policy": self.policy}
        return {"policy": self.policy, "reference": self.reference}

    def train(self, mode: bool = True) -> DPOModule:
        """Switch the policy's mode; a held reference stays in eval mode."""
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()
        return self

    def compute(self, batch: PreferenceBatch) -> DPOStep:
        """Per-pair losses, implicit rewards and policy log-probs of a batch."""
        pairs = concatenate_pairs(batch)
        logps, lengths = pair_logps(self.policy, pairs, self.allowed_token_ids)
        reference = self._reference_logps(batch, pairs)
        out = preference_loss(
            DPOLoss(self.algo.loss).value,
            logps.chosen,
            logps.rejected,
            None if reference is None else reference.chosen,
            None if reference is None else reference.rejected,
            beta=self.algo.beta,
            label_smoothing=self.algo.label_smoothing,
            simpo_gamma=self.algo.simpo_gamma,
            chosen_lengths=lengths.chosen,
            rejected_lengths=lengths.rejected,
        )
        return DPOStep(
            out.losses,
            out.chosen_rewards,
            out.rejected_rewards,
            logps.chosen.detach(),
            logps.rejected.detach(),
        )

    def _log_step(self, step: DPOStep, stage: str, batch_size: int) -> None:
        metrics = {f"{stage}/{name}": value for name, value in step_metrics(step).items()}
        loss = metrics.pop(f"{stage}/loss")
        sync = stage == "val"
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        self.log_dict(metrics, batch_size=batch_size, sync_dist=sync)

    def training_step(self, batch: PreferenceBatch, batch_idx: int) -> torch.Tensor:
        step = self.compute(batch)
        self._log_step(step, "train", len(batch))
        return step.losses.mean()

    def validation_step(self, batch: PreferenceBatch, batch_idx: int) -> None:
        step = self.compute(batch)
        self._log_step(step, "val", len(batch))
        margins = step.chosen_rewards - step.rejected_rewards
        self._val_margins.append(margins)
        if batch.chosen_gold_reward is None or batch.rejected_gold_reward is None:
            self._val_gold_margins.append(torch.full_like(margins, float("nan")))
        else:
            gold = batch.chosen_gold_reward - batch.rejected_gold_reward
            self._val_gold_margins.append(gold.to(margins))

    def on_validation_epoch_start(self) -> None:
        self._val_margins.clear()
        self._val_gold_margins.clear()

    def on_validation_epoch_end(self) -> None:
        """The implicit reward model scored over the whole (gathered) validation epoch."""
        if not self._val_margins:
            return
        margins = gather_epoch(self, self._val_margins)
        gold = gather_epoch(self, self._val_gold_margins)
        # Gathered over every process: the values are identical, so sync_dist's mean is exact.
        self.log("eval/implicit_rm_accuracy", (margins > 0).float().mean(), sync_dist=True)
        agreement = sign_agreement(margins, gold)
        if agreement is not None:
            self.log("eval/implicit_rm_gold_accuracy", agreement, sync_dist=True)
        corr = pearson_correlation(margins, gold)
        if corr is not None:
            self.log("eval/implicit_rm_gold_corr", corr, sync_dist=True)

    def configure_optimizers(self):
        return build_optimizer(self.policy.parameters(), self.algo)
