"""Supervised fine-tuning: the causal-LM loss on response tokens, prompt tokens masked."""

from __future__ import annotations

import torch

from leash.config import SFTConfig
from leash.data.types import SFTBatch
from leash.evaluation.evaluator import PolicyEvaluator
from leash.losses.logprobs import response_logps
from leash.models.kernels import fuse_activations
from leash.modules.evaluated import EvaluatedModule
from leash.modules.optim import build_optimizer
from leash.sequences import restrict_logits


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean negative log-likelihood per response token of a batch, and the token count.

    Args:
        logits: (B, T, V) policy output over prompt + response.
        labels: (B, T) ids with IGNORE_INDEX on prompt and padding.
    """
    summed, counts = response_logps(logits, labels)
    tokens = counts.sum()
    return -summed.sum() / tokens.clamp(min=1), tokens


class SFTModule(EvaluatedModule):
    """Trains ``policy`` to imitate the responses of the SFT view of the shared data module.

    ``allowed_token_ids`` restricts the policy to a built-in task's support (response words +
    EOS), so the likelihood trained is that of the policy that is later sampled and enumerated.
    ``evaluator`` measures the policy after every validation (it is its own reference).
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        algo: SFTConfig,
        allowed_token_ids: torch.Tensor | None = None,
        evaluator: PolicyEvaluator | None = None,
    ):
        super().__init__(evaluator)
        self.policy = policy
        self.algo = algo
        fuse_activations(policy)  # GPT-2's activation as one kernel (leash.models.kernels)
        self.allowed_token_ids = allowed_token_ids

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """The networks this algorithm holds, by role (read by the resource metrics)."""
        return {"policy": self.policy}

    def _step(self, batch: SFTBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        return sft_loss(restrict_logits(logits, self.allowed_token_ids), batch.labels)

    def training_step(self, batch: SFTBatch, batch_idx: int) -> torch.Tensor:
        loss, tokens = self._step(batch)
        self.watch({"train/loss": loss})
        if self.logs_this_step():  # see leash.modules.guard: logging costs a millisecond a call
            self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss * self.share_of_processes(tokens)  # the mean over every process's tokens

    def validation_step(self, batch: SFTBatch, batch_idx: int) -> None:
        loss, tokens = self._step(batch)
        # Weighted by tokens: the epoch's figure is the mean over every held-out token, however
        # the rows are batched or split over processes.
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=int(tokens))

    def configure_optimizers(self):
        return build_optimizer(self.policy.parameters(), self.algo)
