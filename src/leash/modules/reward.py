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
    """Reward-model metrics of some pairs: accuracy, mean margin, mean and std of all rewards.

    ``reward/std`` is the population standard deviation over the 2B rewards (of a training
    batch; of every held-out pair for ``val/``).

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
    """One reward-model forward on a preference batch (or a whole held-out epoch)."""

    losses: torch.Tensor
    """(B,) Bradley–Terry loss of each pair (with grad)."""
    chosen: torch.Tensor
    """(B,) rewards of the chosen responses."""
    rejected: torch.Tensor
    """(B,) rewards of the rejected responses."""
    gold_margin: torch.Tensor | None
    """(B,) gold reward margins (chosen - rejected) when the batch carries gold rewards."""

    @property
    def loss(self) -> torch.Tensor:
        """The mean loss over the pairs: what trains."""
        return self.losses.mean()

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
        self._val_losses: list[torch.Tensor] = []
        self._val_pairs: list[torch.Tensor] = []
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
        losses = bradley_terry_loss(
            chosen, rejected, margin=self.algo.margin, center_coef=self.algo.center_coef
        )
        gold = None
        if batch.chosen_gold_reward is not None and batch.rejected_gold_reward is not None:
            gold = batch.chosen_gold_reward - batch.rejected_gold_reward
        return RewardStep(losses, chosen, rejected, gold)

    def training_step(self, batch: PreferenceBatch, batch_idx: int) -> torch.Tensor:
        step = self.compute(batch)
        self.watch({"train/loss": step.loss.detach(),
                    "train/rewards": torch.cat([step.chosen, step.rejected]).detach()})
        if self.logs_this_step():
            metrics = {f"train/{name}": value for name, value in step.metrics.items()}
            self.log_dict(metrics, batch_size=len(batch))
        return step.loss

    def validation_step(self, batch: PreferenceBatch, batch_idx: int) -> None:
        """Keep every pair's loss and both scores, with their gold rewards (NaN when absent):
        the epoch's figures are computed once over every held-out pair."""
        step = self.compute(batch)
        chosen, rejected = step.chosen.detach().float(), step.rejected.detach().float()
        golds = (batch.chosen_gold_reward, batch.rejected_gold_reward)
        index = batch.index.to(chosen.device)
        self._val_losses.append(step.losses.detach().float())
        self._val_pairs.append(index)
        self._val_scores.append(torch.cat([chosen, rejected]))
        self._val_rows.append(torch.cat([2 * index, 2 * index + 1]))  # one id per response
        self._val_gold.append(
            torch.cat([torch.full_like(chosen, float("nan")) if g is None else g.to(chosen)
                       for g in golds])
        )

    def on_validation_epoch_start(self) -> None:
        for kept in (self._val_losses, self._val_pairs, self._val_scores, self._val_gold,
                     self._val_rows):
            kept.clear()

    def on_validation_epoch_end(self) -> None:
        """``val/*`` over every held-out pair once, gathered from every process (a pair that
        the sampler repeats to even out the shards counts once), and ``val/gold_corr``:
        Pearson(predicted, gold reward) over the responses."""
        if not self._val_scores:
            return
        scores = gather_epoch(self, self._val_scores, self._val_rows)  # chosen, rejected, ...
        gold = gather_epoch(self, self._val_gold, self._val_rows)
        losses = gather_epoch(self, self._val_losses, self._val_pairs)
        whole = RewardStep(losses, scores[0::2], scores[1::2], gold[0::2] - gold[1::2])
        metrics = {f"val/{name}": value for name, value in whole.metrics.items()}
        corr = pearson_correlation(scores, gold)
        if corr is not None:
            metrics["val/gold_corr"] = corr
        self.log_dict(metrics, sync_dist=True)  # gathered: identical on every process

    def configure_optimizers(self):
        return build_optimizer(self.reward_model.parameters(), self.algo)
