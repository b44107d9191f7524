"""The behaviour distribution that writes the SFT corpus of the synthetic task.

A seeded first-order Markov chain over response words, unrelated to the gold reward so that the
SFT reference starts far from the reward's optimum:

- the first word is drawn from a topic-dependent distribution ``softmax(start_logits[t])``;
- each next word from ``softmax(transition_logits[previous])``, where the diagonal carries a
  bonus that favours immediate repeats (which the gold reward penalises);
- before every word but the first the chain stops (the response ends with EOS) with a constant
  probability ``1 / (1 + K*/2)``, so responses are shorter than the reward's target length K* on
  average, and never empty (data pipelines count an empty response as a bad row);
- a response that reaches ``max_length`` words without stopping is cut there (no EOS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

START_SCALE = 1.5
TRANSITION_SCALE = 1.0
REPEAT_BONUS = 1.5


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@dataclass(frozen=True)
class BehaviourChain:
    """Seeded Markov chain over response-word indices (see the module docstring)."""

    start_probs: np.ndarray
    """(num_topics, W) distribution of the first word given the prompt's topic."""
    transition_probs: np.ndarray
    """(W, W) distribution of the next word given the previous one."""
    stop_prob: float
    """Probability of ending (EOS) before each word after the first."""
    max_length: int
    """Words after which a response is cut without EOS."""

    @classmethod
    def sample(
        cls,
        num_topics: int,
        num_words: int,
        target_length: int,
        max_length: int,
        rng: np.random.Generator,
    ) -> BehaviourChain:
        """Draw the chain's logits from ``rng``."""
        start = START_SCALE * rng.standard_normal((num_topics, num_words))
        transition = TRANSITION_SCALE * rng.standard_normal((num_words, num_words))
        transition += REPEAT_BONUS * np.eye(num_words)
        stop_prob = 1.0 / (1.0 + target_length / 2)
        return cls(_softmax(start), _softmax(transition), stop_prob, max_length)

    def sample_responses(
        self, topics: np.ndarray, rng: np.random.Generator
    ) -> tuple[list[list[int]], list[bool]]:
        """Draw one response per entry of ``topics`` ((N,) topic indices).

        Returns:
            the word indices of each response and whether it ended with EOS.
        """
        count = len(topics)
        words = np.full((count, self.max_length), -1, dtype=np.int64)
        alive = np.ones(count, dtype=bool)
        for step in range(self.max_length):
            if step > 0:
                alive &= rng.random(count) >= self.stop_prob
            probs = (
                self.start_probs[topics] if step == 0 else self.transition_probs[words[:, step - 1]]
            )
            draws = (probs.cumsum(-1) < rng.random((count, 1))).sum(-1)
            draws = np.minimum(draws, probs.shape[1] - 1)
            words[alive, step] = draws[alive]
        ended = ~alive
        responses = [row[row >= 0].tolist() for row in words]
        return responses, ended.tolist()
