"""Rewards of sampled responses: a learned reward model and a task's gold reward, one interface.

Every reward reads the same token layout as the rollout: (B, P) left-padded prompts and (B, T)
right-padded responses (the judge reads the decoded texts). :func:`build_reward_fn` picks the
reward PPO optimises (and on-policy DPO orders its pairs by) from ``algo.reward``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from transformers import PreTrainedTokenizerBase

from leash.config import ModelConfig, OnlineDPOConfig, PPOConfig, RewardSource
from leash.data.tasks import SyntheticTask
from leash.models.factory import freeze, load_scalar_model
from leash.models.heads import score_sequences
from leash.models.judge import Judge


class RewardFn(Protocol):
    """A sequence reward: the learned reward model and the gold reward are interchangeable."""

    def __call__(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        """(B,) float32 scores of (B, P) left-padded prompts and (B, T) responses."""
        ...


class LearnedReward(torch.nn.Module):
    """A trained reward model's score of prompt + response, read at the response's last token.

    The model is frozen and stays in eval mode (a parent module's ``train()`` does not wake it).

    Args:
        model: a scalar ``AutoModelForSequenceClassification`` (read by
            :func:`leash.models.heads.score_sequences`).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = freeze(model)

    def forward(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        """(B,) float32 scores."""
        return score_sequences(
            self.model,
            torch.cat([prompt_ids, response_ids], dim=1),
            torch.cat([prompt_mask, response_mask], dim=1),
        )

    def train(self, mode: bool = True) -> LearnedReward:
        """Keep the frozen reward model in eval mode whatever ``mode`` is."""
        super().train(mode)
        self.model.eval()
        return self


class GoldTaskReward:
    """The built-in task's gold reward of token-id rollouts (PPO-GT, the DPO paper's baseline).

    Args:
        task: the synthetic task; its reward ignores BOS and padding, and reads EOS.
    """

    def __init__(self, task: SyntheticTask) -> None:
        self.task = task

    def __call__(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        """(B,) float32 gold rewards on the device of ``response_ids``."""
        return self.task.gold_reward_ids(prompt_ids, response_ids)


class JudgeReward(torch.nn.Module):
    """An independent judge's score of the decoded texts: synthetic-gold mode's gold reward.

    Prompts and responses are decoded with the policy's tokenizer (special tokens and padding
    dropped, as the evaluator's samples are) and re-encoded in the judge's own format
    (:class:`leash.models.judge.Judge`). The judge's network is registered here so that it moves
    with its owner to the training device; it is frozen and stays in eval mode.

    Args:
        judge: the judge that relabelled the pairs (``data.relabel_with``).
        tokenizer: the policy's tokenizer.
    """

    def __init__(self, judge: Judge, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.judge = judge
        self.model = judge.model
        self.tokenizer = tokenizer

    def _texts(self, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
        rows = [row[keep].tolist() for row, keep in zip(ids.cpu(), mask.cpu().bool(), strict=True)]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    def forward(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
    ) -> torch.Tensor:
        """(B,) float32 scores on the device of ``response_ids``."""
        scores = self.judge.score(
            self._texts(prompt_ids, prompt_mask), self._texts(response_ids, response_mask)
        )
        return scores.float().to(response_ids.device)

    def train(self, mode: bool = True) -> JudgeReward:
        """Keep the frozen judge in eval mode whatever ``mode`` is."""
        super().train(mode)
        self.model.eval()
        return self


def build_reward_fn(
    algo: PPOConfig | OnlineDPOConfig,
    model_cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    task: SyntheticTask | None,
    reward_model_path: str | None,
    judge: str | None = None,
) -> RewardFn:
    """The reward of ``algo.reward``: the task's gold reward (PPO-GT), a frozen reward model, or
    the judge of synthetic-gold mode.

    Args:
        algo: reads ``reward``.
        model_cfg: how to load the reward model (dtype, attention implementation).
        tokenizer: the policy's tokenizer (the reward model shares it).
        task: the built-in task, when the data is one (required for ``gold``).
        reward_model_path: the trained reward model folder (required for ``learned``).
        judge: the judge's hub name or folder, ``data.relabel_with`` (required for ``judge``).
    Raises:
        ValueError: the source that ``algo.reward`` names is missing.
    """
    source = RewardSource(algo.reward)
    if source == RewardSource.gold:
        if task is None:
            raise ValueError("algo.reward=gold needs a built-in task with a gold reward (data)")
        return GoldTaskReward(task)
    if source == RewardSource.judge:
        if judge is None:
            raise ValueError("algo.reward=judge needs a judge (data.relabel_with)")
        return JudgeReward(Judge.load(judge), tokenizer)
    if reward_model_path is None:
        raise ValueError("algo.reward=learned needs a trained reward model folder")
    return LearnedReward(
        load_scalar_model(reward_model_path, model_cfg, tokenizer, trainable=False)
    )
