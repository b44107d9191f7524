"""Exact oracle of the enumerable task: π(y|x) for every response, exact KL, reward and frontier.

The response space with W words and length limit L (``max_response_length``, EOS included) is
every k-word response followed by EOS for k = 0..L-1, plus every L-word response cut without
EOS: ``N = sum_(k<L) W^k + W^L`` responses (4,681 for W = 8, L = 4). The policy is restricted to
the response words + EOS, as the sampler restricts it (:func:`leash.sequences.restrict_logits`),
so the probabilities of the N responses sum to 1.

One forward pass over the W^(L-1) sequences ``prompt + (L-1 words)`` gives the next-token
distribution after every prefix of 0..L-1 words (a prefix of k words is read off the sequence
that continues it with word 0), hence every log π(y|x) by cumulative sums; nothing is
recomputed. :class:`ExactOracle` holds the prompts, the space and the gold-reward table, and
turns any model into an :class:`ExactDistribution`; the reference's distribution is computed once
and reused for every KL, every π*_β and the frontier.

The optimum of ``E[r] - β·KL(π || π_ref)`` is ``π*_β ∝ π_ref·exp(r/β)`` per prompt. With one β
shared by all prompts it is also the optimum of the mean reward under a mean-KL budget, so the
averaged (KL, reward) points of π*_β over a β grid trace the optimal frontier exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from leash.data.tasks.synthetic import SyntheticTask
from leash.sequences import evaluating, left_pad, positions_from_mask

MAX_RESPONSES = 1_000_000


@dataclass(frozen=True)
class ResponseSpace:
    """Every response of W words and length limit L, in a fixed order.

    Order: by length k = 0..L-1 with EOS, then the cut L-word responses; within a length,
    lexicographic in word indices (first word most significant).
    """

    num_words: int
    """W: response words (EOS excluded)."""
    max_length: int
    """L: longest response in tokens, EOS included."""
    words: torch.Tensor
    """(N, L) word indices of each response, -1 after its last word."""
    ended: torch.Tensor
    """(N,) whether each response ends with EOS."""

    @classmethod
    def build(cls, num_words: int, max_length: int) -> ResponseSpace:
        """Enumerate the space; fails when it holds more than ``MAX_RESPONSES`` responses."""
        size = sum(num_words**k for k in range(max_length)) + num_words**max_length
        if size > MAX_RESPONSES:
            raise ValueError(
                f"{size} responses (W={num_words}, L={max_length}) exceed the oracle's limit of "
                f"{MAX_RESPONSES}: evaluate this task by sampling"
            )
        words = torch.full((size, max_length), -1, dtype=torch.long)
        ended = torch.ones(size, dtype=torch.bool)
        row = 0
        for length in [*range(max_length), max_length]:
            block = list(itertools.product(range(num_words), repeat=length))
            if length:
                words[row : row + len(block), :length] = torch.tensor(block)
            ended[row : row + len(block)] = length < max_length
            row += len(block)
        return cls(num_words, max_length, words, ended)

    def __len__(self) -> int:
        return len(self.ended)

    def index(self, words: Sequence[int], ended: bool) -> int:
        """Position of a response (word indices, ended with EOS or cut) in the enumeration."""
        length = len(words)
        if ended != (length < self.max_length) or length > self.max_length:
            raise ValueError(f"no response of {length} words with ended={ended}")
        offset = sum(self.num_words**k for k in range(length))
        return offset + sum(w * self.num_words ** (length - 1 - i) for i, w in enumerate(words))


@dataclass(frozen=True)
class ExactDistribution:
    """A policy's exact distribution over the response space, for M prompts."""

    log_probs: torch.Tensor
    """(M, N) float64 log π(y|x) of every response under every prompt."""
    rewards: torch.Tensor
    """(M, N) float64 gold reward of every response (shared with the oracle)."""

    def probs(self) -> torch.Tensor:
        """(M, N) π(y|x)."""
        return self.log_probs.exp()

    def expected_reward(self) -> torch.Tensor:
        """(M,) E_π[r] per prompt."""
        return (self.probs() * self.rewards).sum(-1)

    def kl(self, reference: ExactDistribution) -> torch.Tensor:
        """(M,) KL(π || π_ref) per prompt; responses with π = 0 contribute 0."""
        probs = self.probs()
        terms = probs * (self.log_probs - reference.log_probs)
        return torch.where(probs > 0, terms, torch.zeros_like(terms)).sum(-1)


class ExactOracle:
    """Prompts, response space and gold-reward table of the exact task; models -> distributions."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompts: list[str],
        word_token_ids: Sequence[int],
        max_length: int,
        rewards: torch.Tensor,
        batch_size: int = 4096,
    ) -> None:
        """
        Args:
            tokenizer: encodes prompts (special tokens added, e.g. BOS).
            prompts: M prompts.
            word_token_ids: token id of each response word, in word-index order.
            max_length: L, longest response in tokens, EOS included.
            rewards: (M, N) gold reward of every response of the space under every prompt.
            batch_size: sequences per forward pass.
        """
        self.space = ResponseSpace.build(len(word_token_ids), max_length)
        if rewards.shape != (len(prompts), len(self.space)):
            raise ValueError(f"rewards must be (M, N) = {(len(prompts), len(self.space))}")
        self.prompts = prompts
        self.rewards = rewards.to(torch.float64)
        self.eos_token_id = tokenizer.eos_token_id
        self.word_token_ids = torch.tensor(list(word_token_ids))
        self.batch_size = batch_size
        encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
        self.prompt_ids, self.prompt_mask = left_pad(encoded, tokenizer.pad_token_id)

    @classmethod
    def for_task(
        cls,
        task: SyntheticTask,
        prompts: list[str] | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> ExactOracle:
        """The oracle of a task's prompts (held-out prompts by default) with its gold reward."""
        prompts = task.heldout_prompts if prompts is None else prompts
        space = ResponseSpace.build(
            task.config.response_vocab_size, task.config.max_response_length
        )
        rewards = task.reward.score_all(task.prompt_valence(prompts), space.words, space.ended)
        return cls(
            tokenizer or task.tokenizer(),
            prompts,
            task.response_token_ids(),
            task.config.max_response_length,
            rewards,
        )

    @torch.no_grad()
    def distribution(self, model: PreTrainedModel) -> ExactDistribution:
        """Exact log π(y|x) of every response under every prompt, in eval mode."""
        step_logps = self._step_logps(model)
        return ExactDistribution(self._sequence_logps(step_logps), self.rewards)

    def _prefixes(self) -> torch.Tensor:
        """(S, L-1) every (L-1)-word prefix, lexicographic; S = W^(L-1)."""
        count = self.space.max_length - 1
        rows = list(itertools.product(range(self.space.num_words), repeat=count))
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), count)

    def _step_logps(self, model: PreTrainedModel) -> torch.Tensor:
        """(M, S, L, W + 1) log-probs of each word then EOS after each prefix of each sequence."""
        device = next(model.parameters()).device
        prefix_ids = self.word_token_ids[self._prefixes()]
        allowed = torch.cat([self.word_token_ids, torch.tensor([self.eos_token_id])]).to(device)
        num_prefixes, prompt_width = len(prefix_ids), self.prompt_ids.shape[1]
        rows = [(m, s) for m in range(len(self.prompts)) for s in range(num_prefixes)]
        outputs = []
        with evaluating(model):
            for start in range(0, len(rows), self.batch_size):
                prompt_rows = torch.tensor([m for m, _ in rows[start : start + self.batch_size]])
                prefix_rows = torch.tensor([s for _, s in rows[start : start + self.batch_size]])
                input_ids = torch.cat([self.prompt_ids[prompt_rows], prefix_ids[prefix_rows]], 1)
                mask = torch.cat(
                    [self.prompt_mask[prompt_rows], torch.ones_like(prefix_ids[prefix_rows])], 1
                )
                logits = model(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions_from_mask(mask).to(device),
                ).logits[:, prompt_width - 1 :, :]
                outputs.append(logits.index_select(-1, allowed).float().log_softmax(-1).cpu())
        step = torch.cat(outputs).to(torch.float64)
        return step.reshape(len(self.prompts), num_prefixes, self.space.max_length, -1)

    def _sequence_logps(self, step: torch.Tensor) -> torch.Tensor:
        """(M, S, L, W + 1) step log-probs -> (M, N) log π of every response, in space order."""
        num_words, length = self.space.num_words, self.space.max_length
        prefixes = self._prefixes()
        taken = (
            step[:, :, : length - 1, :]
            .gather(-1, prefixes.expand(step.shape[0], -1, -1).unsqueeze(-1))
            .squeeze(-1)
        )
        cumulative = torch.cat([torch.zeros_like(step[:, :, :1, 0]), taken.cumsum(-1)], dim=-1)
        blocks = []
        for k in range(length):
            # the prefix of k words is read from the sequence that continues it with word 0
            rows = torch.arange(num_words**k) * num_words ** (length - 1 - k)
            blocks.append(cumulative[:, rows, k] + step[:, rows, k, num_words])
        cut = cumulative[:, :, length - 1, None] + step[:, :, length - 1, :num_words]
        blocks.append(cut.reshape(step.shape[0], -1))
        return torch.cat(blocks, dim=-1)


def exact_kl(policy: ExactDistribution, reference: ExactDistribution) -> float:
    """KL(π || π_ref) averaged over prompts."""
    return float(policy.kl(reference).mean())


def exact_gold_reward(policy: ExactDistribution) -> float:
    """E_π[r] averaged over prompts."""
    return float(policy.expected_reward().mean())


def optimal_policy(reference: ExactDistribution, beta: float) -> ExactDistribution:
    """π*_β ∝ π_ref·exp(r/β) per prompt, normalised with logsumexp."""
    scores = reference.log_probs + reference.rewards / beta
    return ExactDistribution(scores - scores.logsumexp(-1, keepdim=True), reference.rewards)


def optimal_point(reference: ExactDistribution, beta: float) -> tuple[float, float]:
    """(KL, reward) of π*_β, each averaged over prompts.

    Uses ``log π*_β - log π_ref = r/β - log Z``, so ``KL = E_(π*)[r]/β - log Z`` per prompt:
    four passes over the (M, N) table instead of a full :meth:`ExactDistribution.kl`.
    """
    scores = reference.log_probs + reference.rewards / beta
    log_z = scores.logsumexp(-1, keepdim=True)
    reward = ((scores - log_z).exp() * reference.rewards).sum(-1)
    kl = reward / beta - log_z.squeeze(-1)
    return float(kl.mean()), float(reward.mean())


@dataclass(frozen=True)
class Frontier:
    """The optimal reward-KL curve, sorted by increasing KL (decreasing β)."""

    betas: np.ndarray
    """(F,) β of each point; the first is inf (π*_inf = π_ref: KL 0)."""
    kl: np.ndarray
    """(F,) mean KL(π*_β || π_ref), non-decreasing."""
    reward: np.ndarray
    """(F,) mean E_(π*_β)[r], non-decreasing."""


def default_betas() -> np.ndarray:
    """A dense log grid of β from 1e3 down to 1e-3 (241 points, 40 per decade)."""
    return np.logspace(3, -3, 241)


def frontier(reference: ExactDistribution, betas: Sequence[float] | None = None) -> Frontier:
    """Optimal (KL, reward) points of π*_β over a β grid, plus the reference itself (β = inf)."""
    grid = np.sort(np.asarray(default_betas() if betas is None else betas, dtype=float))[::-1]
    points = [(0.0, exact_gold_reward(reference))]
    points += [optimal_point(reference, float(beta)) for beta in grid]
    kl, reward = (np.array(column) for column in zip(*points, strict=True))
    return Frontier(np.concatenate([[np.inf], grid]), kl, reward)


def frontier_gap(kl: float, reward: float, frontier: Frontier) -> float:
    """Optimal reward at the policy's KL (linear interpolation) minus the policy's reward.

    Beyond the grid's largest KL the optimal reward is taken as the curve's last (smallest-β)
    value, which tends to the mean of the per-prompt maximum reward.
    """
    return float(np.interp(kl, frontier.kl, frontier.reward)) - reward
