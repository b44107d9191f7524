"""Bradley–Terry reward model on the shared preference pairs, and the scalar scoring PPO reuses.

The score of a sequence is the scalar head applied to the transformer's hidden state at the
**last real token according to the attention mask**. Hugging Face's ``*ForSequenceClassification``
pools at the last token that is not ``pad_token_id`` instead, which is wrong for GPT-2-style
tokenizers that pad with EOS: a response ending in EOS would be read one token early. So
:func:`score_sequences` runs the model's backbone (``base_model``) and its ``score`` head itself,
picking the position from the mask; that works for every HF architecture whose classifier head
is called ``score`` (GPT-2, Llama, Mistral, Qwen, ...) and for a PEFT-wrapped one (the LoRA
layers live inside the backbone; PEFT keeps a trainable copy of ``score``).
"""

from __future__ import annotations

from typing import NamedTuple

import lightning
import torch
from peft import PeftModel

from leash.config import RewardConfig
from leash.data.types import PreferenceBatch
from leash.losses.preference import bradley_terry_loss
from leash.modules.optim import build_optimizer
from leash.rollout.generation import positions_from_mask


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of the rightmost real token of each row (left or right padding).

    Args:
        attention_mask: (B, T) 1 on real tokens.
    Returns:
        (B,) long indices (0 for an all-padding row).
    """
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(-1)


def score_sequences(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Scalar score of each sequence, read at its last real token (see the module docstring).

    Position ids count real tokens only (``cumsum(mask) - 1``), so left-padded sequences (PPO
    rollouts) score like unpadded ones; for right padding they equal the default positions.

    Args:
        model: an ``AutoModelForSequenceClassification`` with ``num_labels=1``, or a PEFT model
            wrapping one.
        input_ids: (B, T) token ids.
        attention_mask: (B, T) 1 on real tokens.
    Returns:
        (B,) float32 scores.
    """
    classifier = model.get_base_model() if isinstance(model, PeftModel) else model
    prefix = getattr(classifier, "base_model_prefix", "")
    if not hasattr(classifier, prefix) or not hasattr(classifier, "score"):
        raise TypeError(
            f"{type(classifier).__name__} needs a backbone (base_model_prefix) and a `score` head"
        )
    position_ids = positions_from_mask(attention_mask)
    hidden = getattr(classifier, prefix)(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
    ).last_hidden_state
    rows = torch.arange(len(input_ids), device=input_ids.device)
    return classifier.score(hidden[rows, last_token_index(attention_mask)]).squeeze(-1).float()


def sign_agreement(predicted: torch.Tensor, gold: torch.Tensor) -> torch.Tensor | None:
    """Fraction of pairs whose predicted margin has the sign of the gold margin.

    Pairs with a missing (NaN) or tied gold margin are left out; a zero predicted margin counts
    as a disagreement (as ``accuracy`` counts a tie as wrong).

    Args:
        predicted: (N,) predicted reward margins (chosen - rejected).
        gold: (N,) gold reward margins.
    Returns:
        a float32 scalar, or None when no pair has a usable gold margin.
    """
    usable = gold.isfinite() & (gold != 0)
    if not usable.any():
        return None
    return (predicted[usable].sign() == gold[usable].sign()).float().mean()


def pearson_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Pearson correlation of ``x`` and ``y`` over the entries where both are finite.

    Args:
        x: (N,) values.
        y: (N,) values.
    Returns:
        a float32 scalar, or None when it is undefined (fewer than 2 points, or zero variance).
    """
    usable = x.isfinite() & y.isfinite()
    x, y = x[usable].double(), y[usable].double()
    if len(x) < 2:
        return None
    x, y = x - x.mean(), y - y.mean()
    scale = (x.square().sum() * y.square().sum()).sqrt()
    if scale == 0:
        return None
    return ((x * y).sum() / scale).float()


def gather_epoch(module: lightning.LightningModule, chunks: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-step values and gather them from every process into one flat tensor.

    Every process must hold the same number of values (true for DistributedSampler's padded
    shards, which Lightning uses for validation).
    """
    return module.all_gather(torch.cat(chunks)).flatten()


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
    metrics: dict[str, torch.Tensor]
    """Detached batch metrics: loss, accuracy, margin, reward/mean, reward/std[, gold_accuracy]."""


class RewardModelModule(lightning.LightningModule):
    """Trains a scalar ``reward_model`` with the Bradley–Terry loss on preference pairs."""

    def __init__(self, reward_model: torch.nn.Module, algo: RewardConfig):
        super().__init__()
        self.reward_model = reward_model
        self.algo = algo
        self._val_scores: list[torch.Tensor] = []
        self._val_gold: list[torch.Tensor] = []

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """The networks this algorithm holds, by role (read by the resource metrics)."""
        return {"reward": self.reward_model}

    def pair_rewards(self, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of chosen (B,) and rejected (B,) from one concatenated (2B, T) forward."""
        scores = score_sequences(
            self.reward_model,
            torch.cat([batch.chosen_input_ids, batch.rejected_input_ids]),
            torch.cat([batch.chosen_attention_mask, batch.rejected_attention_mask]),
        )
        chosen, rejected = scores.chunk(2)
        return chosen, rejected

    def compute(self, batch: PreferenceBatch) -> RewardStep:
        """Mean Bradley–Terry loss of a batch, its rewards and its metrics."""
        chosen, rejected = self.pair_rewards(batch)
        loss = bradley_terry_loss(
            chosen, rejected, margin=self.algo.margin, center_coef=self.algo.center_coef
        ).mean()
        metrics = {"loss": loss.detach(), **pair_metrics(chosen, rejected)}
        if batch.chosen_gold_reward is not None and batch.rejected_gold_reward is not None:
            gold_margin = batch.chosen_gold_reward - batch.rejected_gold_reward
            agreement = sign_agreement((chosen - rejected).detach(), gold_margin)
            if agreement is not None:
                metrics["gold_accuracy"] = agreement
        return RewardStep(loss, chosen, rejected, metrics)

    def _step(self, batch: PreferenceBatch, stage: str) -> torch.Tensor:
        step = self.compute(batch)
        if stage == "val":
            self._collect_gold(batch, step.chosen.detach(), step.rejected.detach())
        self.log_dict(
            {f"{stage}/{name}": value for name, value in step.metrics.items()},
            batch_size=len(batch),
            sync_dist=stage == "val",
        )
        return step.loss

    def _collect_gold(self, batch: PreferenceBatch, chosen: torch.Tensor, rejected: torch.Tensor):
        """Keep every scored response and its gold reward (NaN when absent) for ``gold_corr``."""
        golds = (batch.chosen_gold_reward, batch.rejected_gold_reward)
        self._val_scores.append(torch.cat([chosen, rejected]))
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

    def on_validation_epoch_end(self) -> None:
        """``val/gold_corr``: Pearson(predicted, gold reward) over the epoch's responses."""
        if not self._val_scores:
            return
        corr = pearson_correlation(
            gather_epoch(self, self._val_scores), gather_epoch(self, self._val_gold)
        )
        if corr is not None:
            self.log("val/gold_corr", corr, sync_dist=True)  # gathered: identical on every process

    def configure_optimizers(self):
        return build_optimizer(self.reward_model.parameters(), self.algo)
