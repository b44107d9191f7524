"""Gold reward of the synthetic task: deterministic, bounded, prompt dependent.

A prompt ``x`` is a topic ``t`` and context words ``c_1..c_m``; a response ``y`` is ``k`` words
``y_1..y_k`` that either ended with EOS or were cut at the length limit. With ``K*`` the target
length and ``L`` the longest response (``max_response_length``)::

    v_x(w)     = (1 - a)·V_topic[t, w] + a·mean_j V_ctx[c_j, w]     a = 0.2 (a = 0 if m = 0)
    content    = mean_i v_x(y_i)                                   (0 for the empty response)
    length     = 1/2 - min(1, |k - K*| / max(K*, L - K*))
    stop       = 1/2 if y ended with EOS else 0
    repeat     = #{i >= 2 : y_i = y_(i-1)} / (k - 1)               (0 when k < 2)
    r(x, y)    = content + length + stop - repeat

``V_topic`` and ``V_ctx`` are seeded uniform draws in [-1, 1], so ``v_x(w)`` is in [-1, 1] and
``r`` lies in ``REWARD_BOUNDS = [-2.5, 2]`` (content in [-1, 1], length in [-1/2, 1/2], stop in
{0, 1/2}, repeat in [0, 1]). Any token that is not a response word (a topic or context word,
UNK, BOS) counts as a word of valence -1; all such tokens share one index, so two in a row count
as a repeat.

Why this shape: the best words depend on the topic (and mildly on the context), so the optimum
differs across prompts; the length and stop terms make a well-terminated response of the target
length best; and a word repeated ``k`` times pays the full repeat penalty of 1, while alternating
the two best words loses at most ``(v_1 - v_2)/2 <= 1`` of content, strictly less for distinct
valences, so one token repeated is never optimal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

REWARD_BOUNDS = (-2.5, 2.0)
CONTEXT_WEIGHT = 0.2
OUT_OF_VOCABULARY_VALENCE = -1.0


@dataclass(frozen=True)
class GoldReward:
    """Valence tables and the reward formula of the module docstring, batched on tensors."""

    topic_valence: torch.Tensor
    """(num_topics, W) float64 valence of each response word under each topic."""
    context_valence: torch.Tensor
    """(num_context_words, W) float64 valence shift brought by each context word."""
    target_length: int
    """K*: word count at which the length term peaks."""
    max_length: int
    """L: the longest response in tokens."""

    @classmethod
    def sample(
        cls,
        num_topics: int,
        num_context_words: int,
        num_words: int,
        target_length: int,
        max_length: int,
        rng: np.random.Generator,
    ) -> GoldReward:
        """Draw the valence tables uniformly in [-1, 1] from ``rng``."""
        topic = rng.uniform(-1.0, 1.0, size=(num_topics, num_words))
        context = rng.uniform(-1.0, 1.0, size=(num_context_words, num_words))
        return cls(torch.from_numpy(topic), torch.from_numpy(context), target_length, max_length)

    @property
    def num_words(self) -> int:
        """W: response words; index W is the shared out-of-vocabulary word."""
        return self.topic_valence.shape[1]

    def prompt_valence(self, topic: torch.Tensor, context_counts: torch.Tensor) -> torch.Tensor:
        """Per-prompt valence ``v_x`` of every word, plus the out-of-vocabulary column.

        Args:
            topic: (B,) topic index of each prompt.
            context_counts: (B, C) occurrences of each context word in each prompt.
        Returns:
            (B, W + 1) float64; column W is the out-of-vocabulary valence -1.
        """
        counts = context_counts.to(torch.float64)
        topic_part = self.topic_valence[topic]
        total = counts.sum(-1, keepdim=True)
        context_part = counts @ self.context_valence / total.clamp(min=1)
        mixed = (1 - CONTEXT_WEIGHT) * topic_part + CONTEXT_WEIGHT * context_part
        valence = torch.where(total > 0, mixed, topic_part)
        unknown = torch.full_like(valence[:, :1], OUT_OF_VOCABULARY_VALENCE)
        return torch.cat([valence, unknown], dim=-1)

    def score(
        self, valence: torch.Tensor, words: torch.Tensor, ended: torch.Tensor
    ) -> torch.Tensor:
        """Reward of one response per prompt.

        Args:
            valence: (B, W + 1) from :meth:`prompt_valence`.
            words: (B, T) word indices in [0, W], left aligned, -1 after the last word.
            ended: (B,) whether each response ended with EOS.
        Returns:
            (B,) float64 rewards.
        """
        word_valence = valence.gather(1, words.clamp(min=0))
        return self._combine(word_valence, words, ended)

    def score_all(
        self, valence: torch.Tensor, words: torch.Tensor, ended: torch.Tensor
    ) -> torch.Tensor:
        """Reward of every response under every prompt (the oracle's table).

        Args:
            valence: (M, W + 1) from :meth:`prompt_valence`.
            words: (N, T) word indices, left aligned, -1 after the last word.
            ended: (N,) whether each response ended with EOS.
        Returns:
            (M, N) float64 rewards.
        """
        word_valence = valence[:, words.clamp(min=0)]
        return self._combine(word_valence, words, ended)

    def _combine(
        self, word_valence: torch.Tensor, words: torch.Tensor, ended: torch.Tensor
    ) -> torch.Tensor:
        """The formula on (..., T) word valences and (..., T) words; leading dims broadcast."""
        present = words >= 0
        count = present.sum(-1)
        content = (word_valence * present).sum(-1) / count.clamp(min=1)
        repeats = ((words[..., 1:] == words[..., :-1]) & present[..., 1:]).sum(-1)
        repeat = repeats / (count - 1).clamp(min=1)
        scale = max(self.target_length, self.max_length - self.target_length)
        distance = ((count - self.target_length).abs() / scale).clamp(max=1.0)
        length = 0.5 - distance
        stop = 0.5 * ended.to(torch.float64)
        return content + length + stop - repeat
