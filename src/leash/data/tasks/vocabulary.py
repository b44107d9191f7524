"""Token-id lookups of the synthetic task's word-level tokenizer.

The gold reward is defined on words; rollouts arrive as token ids. These tables map every id to
its topic, context-word or response-word index in one tensor gather, so batched rewards never
decode text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class TokenIds:
    """Id lookups of one tokenizer: id -> topic / context-word / response-word index."""

    table: dict[str, int]
    """Word -> token id."""
    response: list[int]
    """Token id of each response word, in word-index order."""
    eos: int
    pad: int
    unk: int
    topic_of: torch.Tensor
    """(vocab,) topic index of each id, -1 elsewhere."""
    context_of: torch.Tensor
    """(vocab,) context-word index of each id, -1 elsewhere."""
    word_of: torch.Tensor
    """(vocab,) response-word index of each id; W (the out-of-vocabulary word) elsewhere."""

    @classmethod
    def build(
        cls,
        tokenizer: PreTrainedTokenizerBase,
        topic_words: Sequence[str],
        context_words: Sequence[str],
        response_words: Sequence[str],
    ) -> TokenIds:
        """Read the ids of the task's words from ``tokenizer`` and fill the lookups."""
        table = tokenizer.get_vocab()
        size = len(tokenizer)
        topic_of = torch.full((size,), -1, dtype=torch.long)
        context_of = torch.full((size,), -1, dtype=torch.long)
        word_of = torch.full((size,), len(response_words), dtype=torch.long)
        for lookup, words in (
            (topic_of, topic_words),
            (context_of, context_words),
            (word_of, response_words),
        ):
            for index, word in enumerate(words):
                lookup[table[word]] = index
        return cls(
            table=table,
            response=[table[word] for word in response_words],
            eos=tokenizer.eos_token_id,
            pad=tokenizer.pad_token_id,
            unk=tokenizer.unk_token_id,
            topic_of=topic_of,
            context_of=context_of,
            word_of=word_of,
        )

    def encode(self, words: Sequence[str]) -> list[int]:
        """Word list -> ids (unknown words -> UNK), no special tokens."""
        return [self.table.get(word, self.unk) for word in words]
