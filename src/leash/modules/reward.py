"""Bradley–Terry reward model on the shared preference pairs.

Scores are read as the one scalar-head reader, :func:`leash.models.heads.score_sequences`,
reads them (at the last real token according to the attention mask, right for tokenizers that
pad with EOS), with each prompt run once for its two responses where
:mod:`leash.models.shared_prompt` applies.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from leash.config import RewardConfig
from leash.data.types import PreferenceBatch
from leash.losses.preference import bradley_terry_loss
from leash.models.heads import backbone_and_head, score_sequences
from leash.models.kernels import fuse_activations
from leash.models.shared_prompt import shared_prompt_scores
from leash.modules.epoch_metrics import gather_epoch, pearson_correlation, sign_agreement
from leash.modules.guard import GuardedModule
from leash.modules.optim import build_optimizer


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Reward-model metrics of a batch: accuracy, mean margin, mean and std of all rewards.

    ``reward/std`` is the population standard deviation over the 2B rewards.

    Args:
        chosen: (B,) rewards of the chosen responses.
        rejected: (B,) rewards of the rejected responses.
    """
    chosen, rejected = chosen.detach().float(), rejected.detach().float()
    rewards = torch.cat([chosen, rejected])
    return {
        "accuracy": (chosen > rejected).float().mean(),
        "margin": (chosen - rejected).mean(),
        "reward/mean": rewards.mean(),
        "reward/std": rewards.std(correction=0),
    }


class RewardStep(NamedTuple):
    """One reward-model forward on a preference batch."""

    loss: torch.Tensor
    """Scalar mean Bradley–Terry loss (with grad)."""
    chosen: torch.Tensor
    """(B,) rewards of the chosen responses."""
    rejected: torch.Tensor
    """(B,) rewards of the rejected responses."""
    gold_margin: torch.Tensor | None
    """(B,) gold reward margins (chosen - rejected) when the batch carries gold rewards."""

    @property
    def metrics(self) -> dict[str, torch.Tensor]:
        """Detached batch metrics: loss, accuracy, margin, reward/mean, reward/std[,
        gold_accuracy] (computed when asked: training logs them on logging steps only)."""
        metrics = {"loss": self.loss.detach(), **pair_metrics(self.chosen, self.rejected)}
        if self.gold_margin is not None:
            margin = (self.chosen - self.rejected).detach()
            agreement = sign_agreement(margin, self.gold_margin)
            if agreement is not None:
                metrics["gold_accuracy"] = agreement
        return metrics


class RewardModelModule(GuardedModule):
    """Trains a scalar ``reward_model`` with the Bradley–Terry loss on preference pairs (guarded
    as :mod:`leash.modules.guard` says: its training loss and rewards are watched)."""

    def __init__(self, reward_model: torch.nn.Module, algo: RewardConfig):
        super().__init__()
        self.reward_model = reward_model
        self.algo = algo
        fuse_activations(reward_model)  # GPT-2's activation as one kernel (leash.models.kernels)
        self._val_scores: list[torch.Tensor] = []
        self._val_gold: list[torch.Tensor] = []
        self._val_rows: list[torch.Tensor] = []

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """The networks this algorithm holds, by role (read by the resource metrics)."""
        return {"reward": self.reward_model}

    def pair_rewards(self, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of chosen (B,) and rejected (B,): each prompt run once for both responses
        where :mod:`leash.models.shared_prompt` applies, else one (2B, T) forward."""
        pairs = batch.concatenated()
        head = backbone_and_head(self.reward_model)[1]
        scores = shared_prompt_scores(self.reward_model, head, *pairs)
        if scores is None:
            scores = score_sequences(self.reward_model, pairs.input_ids, pairs.attention_mask)
        chosen, rejected = scores.chunk(2)
        return chosen, rejected

    def compute(self, batch: PreferenceBatch) -> RewardStep:
        """Mean Bradley–Terry loss of a batch and its rewards (metrics on demand)."""
        chosen, rejected = self.pair_rewards(batch)
        loss = bradley_terry_loss(
            chosen, rejected, margin=self.algo.margin, center_coef=self.algo.center_coef
        ).mean()
        gold = None
        if batch.chosen_gold_reward is not None and batch.rejected_gold_reward is not None:
            gold = batch.chosen_gold_reward - batch.rejected_gold_reward
        return RewardStep(loss, chosen, rejected, gold)

    def _step(self, batch: PreferenceBatch, stage: str) -> torch.Tensor:
        step = self.compute(batch)
        if stage == "val":
            self._collect_gold(batch, step.chosen.detach(), step.rejected.detach())
        else:
            self.watch({"train/loss": step.loss.detach(),
                        "train/rewards": torch.cat([step.chosen, step.rejected]).detach()})
            if not self.logs_this_step():
                return step.loss
        metrics = {f"{stage}/{name}": value for name, value in step.metrics.items()}
        self.log_dict(metrics, batch_size=len(batch), sync_dist=stage == "val")
        return step.loss

    def _collect_gold(self, batch: PreferenceBatch, chosen: torch.Tensor, rejected: torch.Tensor):
        """Keep every scored response and its gold reward (NaN when absent) for ``gold_corr``."""
        golds = (batch.chosen_gold_reward, batch.rejected_gold_reward)
        self._val_scores.append(torch.cat([chosen, rejected]))
        index = batch.index.to(chosen.device)
        self._val_rows.append(torch.cat([2 * index, 2 * index + 1]))  # one id per response
        self._val_gold.append(
            torch.cat([torch.full_like(chosen, float("nan")) if g is None else g.to(chosen)
                       for g in golds])
        )

    def training_step(self, batch: PreferenceBatch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: PreferenceBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._val_scores.clear()
        self._val_gold.clear()
        self._val_rows.clear()

    def on_validation_epoch_end(self) -> None:
        """``val/gold_corr``: Pearson(predicted, gold reward) over the epoch's responses."""
        if not self._val_scores:
            return
        corr = pearson_correlation(
            gather_epoch(self, self._val_scores, self._val_rows),
            gather_epoch(self, self._val_gold, self._val_rows),
        )
        if corr is not None:
            self.log("val/gold_corr", corr, sync_dist=True)  # gathered: identical on every process

    def configure_optimizers(self):
        return build_optimizer(self.reward_model.parameters(), self.algo)
