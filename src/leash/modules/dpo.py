"""The DPO family (sigmoid/cDPO, robust, IPO, hinge, SimPO) as one LightningModule.

Per batch: one concatenated chosen + rejected forward of the policy, the reference log-probs
from the :class:`~leash.models.reference.Reference` (a forward of its network, or the
log-probs precomputed once and carried by the batch), and ``preference_loss``. The
training loss is the **mean over pairs**: each pair's loss depends on summed (not averaged)
token log-probs, so a batch of N pairs and k accumulated micro-batches of N/k pairs give the
same loss and gradients (Lightning divides each micro-batch loss by k). A sum over pairs would
not: the accumulated gradient would be 1/k of the full batch's.

Validation also scores the implicit reward model ``beta · log pi/pi_ref`` (``beta · log pi /
length`` for SimPO) on the held-out pairs, over the whole epoch (:mod:`leash.modules.evaluated`):
``eval/implicit_rm_accuracy``, and against the gold reward where the batch carries one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

from leash.config import DPOConfig, DPOLoss
from leash.data.types import PairInputs, PreferenceBatch
from leash.evaluation.evaluator import PolicyEvaluator
from leash.losses.preference import preference_loss
from leash.models.factory import disable_dropout
from leash.models.kernels import fuse_activations
from leash.models.logprobs import PairLogps, pair_logps
from leash.models.reference import Reference
from leash.modules.evaluated import EvaluatedModule
from leash.modules.optim import build_optimizer
from leash.sequences import evaluating


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


def batch_reference_logps(batch: PreferenceBatch) -> PairLogps:
    """The reference log-probs a batch carries (``algo.reference=precomputed``); raise if absent."""
    chosen, rejected = batch.reference_chosen_logps, batch.reference_rejected_logps
    if chosen is None or rejected is None or chosen.isnan().any() or rejected.isnan().any():
        raise ValueError(
            "algo.reference=precomputed but the batch lacks reference_chosen_logps / "
            "reference_rejected_logps: compute them with precompute_reference_logps and "
            "attach them to every split that is trained or validated "
            "(PreferenceDataModule.attach_reference_logps)"
        )
    return PairLogps(chosen.float(), rejected.float())


class DPOModule(EvaluatedModule):
    """Trains ``policy`` with the DPO-family loss ``algo.loss`` against a reference policy.

    Args:
        policy: the causal LM being trained (a PEFT model for ``algo.reference=adapter``).
        reference: π_ref (see :func:`leash.models.reference.build_reference`); SimPO trains
            without it, and only the evaluator reads it.
        algo: the loss, beta, smoothing, SimPO margin, reference mode and optimizer settings.
        allowed_token_ids: (A,) the policy's support on a built-in task (its response words +
            EOS); log-probs are those of the restricted policy, the one that is sampled and
            enumerated. None uses the whole vocabulary.
        evaluator: the common evaluator, run after every validation epoch.
    Dropout is disabled in both networks (see :func:`leash.models.factory.disable_dropout`) and
    GPT-2's activation runs as one fused kernel (:mod:`leash.models.kernels`).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        reference: Reference,
        algo: DPOConfig,
        allowed_token_ids: torch.Tensor | None = None,
        evaluator: PolicyEvaluator | None = None,
    ):
        super().__init__(evaluator)
        self._val_steps: list[DPOStep] = []
        self.policy = policy
        self.reference = reference
        self.algo = algo
        self.allowed_token_ids = allowed_token_ids
        for model in self.roles.values():
            disable_dropout(model)
            fuse_activations(model)

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """The networks this algorithm holds, by role (read by the resource metrics)."""
        return {"policy": self.policy, **self.reference.roles}

    @property
    def reference_free(self) -> bool:
        """SimPO's loss reads no reference log-probs."""
        return DPOLoss(self.algo.loss) == DPOLoss.simpo

    def reference_logps(self, batch: PreferenceBatch, pairs: PairInputs) -> PairLogps | None:
        """Reference log-probs of a batch (no gradients), or None for a reference-free loss."""
        if self.reference_free:
            return None
        if self.reference.precomputed:
            return batch_reference_logps(batch)
        with torch.inference_mode(), self.reference.scope() as network:
            logps = pair_logps(network, *pairs, self.allowed_token_ids)[0]
        return PairLogps(logps.chosen.clone(), logps.rejected.clone())  # usable by autograd

    def compute(self, batch: PreferenceBatch) -> DPOStep:
        """Per-pair losses, implicit rewards and policy log-probs of a batch."""
        pairs = batch.concatenated()
        logps, lengths = pair_logps(self.policy, *pairs, self.allowed_token_ids)
        reference = self.reference_logps(batch, pairs)
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

    def _log_step(self, step: DPOStep, batch_size: int) -> None:
        """Watch every training step; compute and log the metrics on logging steps only (see
        :mod:`leash.modules.guard`)."""
        self.watch({"train/loss": step.losses.detach().mean(),
                    "train/rewards/chosen": step.chosen_rewards,
                    "train/rewards/rejected": step.rejected_rewards})
        if self.logs_this_step():
            self._log_metrics(step, "train", batch_size)

    def _log_metrics(self, step: DPOStep, stage: str, batch_size: int | None = None) -> None:
        metrics = {f"{stage}/{name}": value for name, value in step_metrics(step).items()}
        loss = metrics.pop(f"{stage}/loss")
        sync = stage == "val"  # gathered: identical on every process
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=sync)
        self.log_dict(metrics, batch_size=batch_size, sync_dist=sync)

    def training_step(self, batch: PreferenceBatch, batch_idx: int) -> torch.Tensor:
        step = self.compute(batch)
        self._log_step(step, len(batch))
        return step.losses.mean()

    def validation_step(self, batch: PreferenceBatch, batch_idx: int) -> None:
        """Keep the batch's per-pair figures: ``val/*`` are computed once over every held-out
        pair at the epoch's end."""
        step = self.compute(batch)
        self._val_steps.append(DPOStep(*(value.detach().float() for value in step)))
        self.record_heldout_pairs(step.chosen_rewards, step.rejected_rewards, batch)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._val_steps.clear()

    def on_validation_epoch_end(self) -> None:
        """``val/*`` over every held-out pair once, gathered from every process (a pair the
        sampler repeats to even out the shards counts once), then the evaluation."""
        if self._val_steps:
            whole = DPOStep(*(self.gather_heldout(list(values))
                              for values in zip(*self._val_steps, strict=True)))
            self._log_metrics(whole, "val")
        super().on_validation_epoch_end()

    def configure_optimizers(self):
        return build_optimizer(self.policy.parameters(), self.algo)


def precompute_reference_logps(
    model: torch.nn.Module,
    dataloader: Iterable[PreferenceBatch],
    allowed_token_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed reference log-probs of every pair of a split, ordered by ``batch.index``.

    Runs once before training (eval mode, no gradients; the model's training mode is restored),
    so that the reference needs no memory while the policy trains. Single process: give it a
    loader over the whole split (any order; no sampler sharding, no ``drop_last``).

    Returns:
        chosen (N,) and rejected (N,) float32 on CPU, where row i holds the pair with index i.
    Raises:
        ValueError: the indices seen are not exactly 0..N-1, each once.
    """
    device = next(model.parameters()).device
    indices, chosen, rejected = [], [], []
    with torch.no_grad(), evaluating(model):
        for batch in dataloader:
            batch = batch.to(device)
            logps, _ = pair_logps(model, *batch.concatenated(), allowed_token_ids)
            indices.append(batch.index.cpu())
            chosen.append(logps.chosen.cpu())
            rejected.append(logps.rejected.cpu())
    index = torch.cat(indices)
    if not torch.equal(index.sort().values, torch.arange(len(index))):
        raise ValueError("precompute_reference_logps needs every row index 0..N-1 exactly once")
    order = index.argsort()
    return torch.cat(chosen)[order], torch.cat(rejected)[order]
