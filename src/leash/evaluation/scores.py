"""Every score of a set of sampled responses: gold reward, proxy reward model, judge, length.

- the **gold reward** of a built-in task, from token ids;
- the **proxy** reward model (the one PPO optimises), on the policy's own token ids;
- the independent **judge**, on the decoded texts re-encoded in its own format
  (:class:`leash.models.judge.Judge`).

Each is None when the run has no such scorer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from leash.data.tasks import SyntheticTask
from leash.data.types import Samples
from leash.models.heads import score_sequences
from leash.models.judge import Judge
from leash.sequences import evaluating, left_pad, right_pad


@dataclass(frozen=True)
class SampleScores:
    """Scores of N samples, (N,) float64 each; None when the scorer is absent."""

    gold: torch.Tensor | None
    proxy: torch.Tensor | None
    judge: torch.Tensor | None
    lengths: torch.Tensor
    """(N,) response tokens (EOS included)."""

    def preferred(self) -> torch.Tensor | None:
        """What a win rate compares: the judge's score, else the proxy's."""
        return self.judge if self.judge is not None else self.proxy


@dataclass
class Scorers:
    """The scorers a run has, applied alike to the policy's and the reference's samples."""

    tokenizer: PreTrainedTokenizerBase
    task: SyntheticTask | None = None
    reward_model: torch.nn.Module | None = None
    judge: Judge | None = None
    batch_size: int = 256

    def score(
        self, prompt_ids: list[list[int]], prompt_texts: list[str], samples: Samples
    ) -> SampleScores:
        """Scores of every sample; ``prompt_ids``/``prompt_texts`` are the samples' prompts."""
        lengths = torch.tensor([len(ids) for ids in samples.response_ids], dtype=torch.float64)
        judge = None
        if self.judge is not None:
            judge = self.judge.score(prompt_texts, samples.text)
        return SampleScores(
            self._gold(prompt_ids, samples.response_ids),
            self._proxy(prompt_ids, samples.response_ids),
            judge,
            lengths,
        )

    def _gold(self, prompts: list[list[int]], responses: list[list[int]]) -> torch.Tensor | None:
        if self.task is None:
            return None
        pad = self.tokenizer.pad_token_id
        prompt_ids, _ = left_pad(prompts, pad)
        response_ids, _ = right_pad(responses, pad)
        return self.task.gold_reward_ids(prompt_ids, response_ids).double()

    def _proxy(self, prompts: list[list[int]], responses: list[list[int]]) -> torch.Tensor | None:
        model = self.reward_model
        if model is None:
            return None
        pad = self.tokenizer.pad_token_id
        device = next(model.parameters()).device
        sequences = [p + r for p, r in zip(prompts, responses, strict=True)]
        scores = []
        with evaluating(model):
            for start in range(0, len(sequences), self.batch_size):
                ids, mask = right_pad(sequences[start : start + self.batch_size], pad)
                scores.append(score_sequences(model, ids.to(device), mask.to(device)).cpu())
        return torch.cat(scores).double()
