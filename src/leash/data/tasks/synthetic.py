"""The built-in synthetic task: vocabulary, prompts, gold reward, SFT corpus, preference pairs.

Vocabulary: topic tokens ``topic0..``, context words ``ctx0..`` and response words ``w0..``, one
token each under :func:`build_word_tokenizer`. A prompt is a topic token then
``prompt_length - 1`` context words (``"topic2 ctx4 ctx1"``); the task holds ``num_prompts``
distinct prompts, topics assigned in turn, split once into train and held-out prompts.

Everything is derived from ``TaskConfig.seed`` through independent random streams, so that for
example changing the corpus size leaves the prompts and the reward unchanged. The gold reward is
documented in :mod:`leash.data.tasks.reward`, the behaviour distribution of the SFT corpus in
:mod:`leash.data.tasks.behaviour`, the preference labelling in :mod:`leash.data.tasks.pairs`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerFast

from leash.config import TaskConfig
from leash.data.tasks.behaviour import BehaviourChain
from leash.data.tasks.pairs import in_subset, label_pairs
from leash.data.tasks.reward import GoldReward
from leash.data.tasks.vocabulary import TokenIds
from leash.data.types import SampleFn
from leash.models.tokenizers import build_word_tokenizer
from leash.sequences import left_pad, right_pad

# Independent random streams derived from the task seed.
_PROMPTS, _REWARD, _BEHAVIOUR, _CORPUS, _PAIRS = range(5)


def _stream(seed: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *extra])


@dataclass(frozen=True)
class SyntheticTask:
    """One instance of the synthetic task, fully determined by its :class:`TaskConfig`."""

    config: TaskConfig
    topic_words: list[str]
    context_words: list[str]
    response_words: list[str]
    prompts: list[str]
    """Every prompt, in generation order."""
    train_prompts: list[str]
    heldout_prompts: list[str]
    reward: GoldReward
    behaviour: BehaviourChain

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> SyntheticTask:
        """Build the task's vocabulary, prompts, split, reward and behaviour chain from ``cfg``."""
        topics = [f"topic{i}" for i in range(cfg.num_topics)]
        contexts = [f"ctx{i}" for i in range(cfg.num_prompt_words)]
        words = [f"w{i}" for i in range(cfg.response_vocab_size)]
        prompts = _make_prompts(cfg, topics, contexts)
        order = _stream(cfg.seed, _PROMPTS, 1).permutation(len(prompts))
        num_heldout = min(max(round(cfg.eval_fraction * len(prompts)), 1), len(prompts) - 1)
        heldout = sorted(order[:num_heldout].tolist())
        train = sorted(order[num_heldout:].tolist())
        reward = GoldReward.sample(
            cfg.num_topics,
            cfg.num_prompt_words,
            cfg.response_vocab_size,
            cfg.target_length,
            cfg.max_response_length,
            _stream(cfg.seed, _REWARD),
        )
        behaviour = BehaviourChain.sample(
            cfg.num_topics,
            cfg.response_vocab_size,
            cfg.target_length,
            cfg.max_response_length,
            _stream(cfg.seed, _BEHAVIOUR),
        )
        return cls(
            config=cfg,
            topic_words=topics,
            context_words=contexts,
            response_words=words,
            prompts=prompts,
            train_prompts=[prompts[i] for i in train],
            heldout_prompts=[prompts[i] for i in heldout],
            reward=reward,
            behaviour=behaviour,
        )

    # ------------------------------------------------------------------------------ vocabulary
    @property
    def vocabulary(self) -> list[str]:
        """Every word of the task, in tokenizer order: topics, context words, response words."""
        return self.topic_words + self.context_words + self.response_words

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """A fresh word-level tokenizer over :attr:`vocabulary` (BOS prepended on encode)."""
        return build_word_tokenizer(self.vocabulary)

    @functools.cached_property
    def _ids(self) -> TokenIds:
        return TokenIds.build(
            self.tokenizer(), self.topic_words, self.context_words, self.response_words
        )

    def allowed_token_ids(self) -> torch.Tensor:
        """(W + 1,) ids of the response words then EOS: the policy's support on this task."""
        return torch.tensor(self._ids.response + [self._ids.eos])

    def response_token_ids(self) -> list[int]:
        """Token id of each response word, in word-index order (the oracle's enumeration)."""
        return list(self._ids.response)

    # ---------------------------------------------------------------------------- gold reward
    def gold_reward(self, prompt: str, response_words: list[str], ended_with_eos: bool) -> float:
        """Gold reward of one response (formula and bounds in :mod:`leash.data.tasks.reward`)."""
        return float(self.gold_rewards([prompt], [response_words], [ended_with_eos])[0])

    def gold_rewards(
        self,
        prompts: Sequence[str],
        responses: Sequence[Sequence[str]],
        ended: Sequence[bool],
    ) -> np.ndarray:
        """Gold rewards of a batch of (prompt, response words, ended) triples -> (B,) float64."""
        ids = self._ids
        prompt_ids, _ = left_pad([ids.encode(prompt.split()) for prompt in prompts], ids.pad)
        responses_ids = [
            ids.encode(words) + ([ids.eos] if stop else [])
            for words, stop in zip(responses, ended, strict=True)
        ]
        response_ids, _ = right_pad(responses_ids, ids.pad)
        return self._score_ids(prompt_ids, response_ids).numpy()

    def gold_reward_ids(self, prompt_ids: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
        """Gold rewards of token-id rollouts (what PPO-GT and the evaluator score).

        Args:
            prompt_ids: (B, P) prompt token ids, any padding (BOS and pad are ignored).
            response_ids: (B, T) as from :func:`generate`: tokens, then EOS if the response
                ended, then pad.
        Returns:
            (B,) float32 rewards on the device of ``response_ids``.
        """
        device = response_ids.device
        return self._score_ids(prompt_ids.cpu(), response_ids.cpu()).float().to(device)

    def prompt_valence(self, prompts: Sequence[str]) -> torch.Tensor:
        """(B, W + 1) float64 word valences ``v_x`` of each prompt (the oracle's reward input)."""
        prompt_ids, _ = left_pad([self._ids.encode(p.split()) for p in prompts], self._ids.pad)
        return self._prompt_valence(prompt_ids)

    def _prompt_valence(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        topic = self._ids.topic_of[prompt_ids]
        if not bool(((topic >= 0).sum(-1) == 1).all()):
            raise ValueError("every prompt must hold exactly one topic token")
        context = self._ids.context_of[prompt_ids]
        counts = torch.zeros(len(prompt_ids), len(self.context_words), dtype=torch.float64)
        counts.scatter_add_(1, context.clamp(min=0), (context >= 0).to(torch.float64))
        return self.reward.prompt_valence(topic.max(-1).values, counts)

    def _score_ids(self, prompt_ids: torch.Tensor, response_ids: torch.Tensor) -> torch.Tensor:
        is_eos = response_ids == self._ids.eos
        present = (is_eos.cumsum(-1) == 0) & (response_ids != self._ids.pad)
        words = torch.where(present, self._ids.word_of[response_ids], -1)
        return self.reward.score(self._prompt_valence(prompt_ids), words, is_eos.any(-1))

    # ------------------------------------------------------------------------------------ data
    def sft_corpus(self) -> Dataset:
        """``sft_corpus_size`` rows from the behaviour chain on the train prompts.

        Columns: ``prompt``, ``response`` (space-separated words; EOS is not written, the data
        pipeline appends it) and ``ended`` (False for a response cut at the length limit, which
        must not get an EOS). Prompts cycle through the train prompts in a seeded order.
        """
        rng = _stream(self.config.seed, _CORPUS)
        order = rng.permutation(self.config.sft_corpus_size) % len(self.train_prompts)
        prompts = [self.train_prompts[i] for i in order]
        topics = np.array([self.topic_words.index(prompt.split()[0]) for prompt in prompts])
        responses, ended = self.behaviour.sample_responses(topics, rng)
        text = [" ".join(self.response_words[w] for w in response) for response in responses]
        return Dataset.from_dict({"prompt": prompts, "response": text, "ended": ended})

    def in_pair_support(self, text: str, ended: bool) -> bool:
        """Whether a response may appear in a preference pair: it lies in the task's random
        subset of ``pair_coverage`` of all responses (:func:`.pairs.in_subset`, task seed)."""
        return in_subset(text, ended, self.config.pair_coverage, self.config.seed)

    def preference_pairs(self, sample_fn: SampleFn) -> DatasetDict:
        """DPO-paper preference pairs from a sampler of the SFT policy (see :mod:`.pairs`).

        Splits ``train`` (train prompts) and ``test`` (held-out prompts), ``pairs_per_prompt``
        pairs per prompt, labelled by Bradley-Terry on the gold reward at ``label_temperature``
        with a seeded label stream, both responses in the pair support
        (:meth:`in_pair_support`) when ``pair_coverage < 1``. Columns: ``prompt``, ``chosen``,
        ``rejected``, ``chosen_gold_reward``, ``rejected_gold_reward``, ``chosen_ended``,
        ``rejected_ended``.
        """
        cfg = self.config
        keep = self.in_pair_support if cfg.pair_coverage < 1 else None
        splits = {"train": self.train_prompts, "test": self.heldout_prompts}
        return DatasetDict(
            {
                name: label_pairs(
                    prompts,
                    sample_fn,
                    self.gold_rewards,
                    cfg.pairs_per_prompt,
                    cfg.label_temperature,
                    _stream(cfg.seed, _PAIRS, index),
                    keep,
                )
                for index, (name, prompts) in enumerate(splits.items())
            }
        )


def _make_prompts(cfg: TaskConfig, topics: list[str], contexts: list[str]) -> list[str]:
    """``num_prompts`` distinct prompts; prompt i has topic ``i mod num_topics``."""
    per_topic = math.ceil(cfg.num_prompts / cfg.num_topics)
    capacity = cfg.num_prompt_words ** (cfg.prompt_length - 1)
    if capacity < per_topic:
        raise ValueError(
            f"task.num_prompts: {cfg.num_prompts} distinct prompts need {per_topic} per topic, but "
            f"only {capacity} contexts exist (num_prompt_words ** (prompt_length - 1))"
        )
    rng = _stream(cfg.seed, _PROMPTS)
    seen: set[tuple[int, ...]] = set()
    prompts = []
    while len(prompts) < cfg.num_prompts:
        topic = len(prompts) % cfg.num_topics
        context = tuple(rng.integers(cfg.num_prompt_words, size=cfg.prompt_length - 1).tolist())
        if (topic, *context) not in seen:
            seen.add((topic, *context))
            prompts.append(" ".join([topics[topic], *(contexts[c] for c in context)]))
    return prompts
