"""An independent judge: a reward model with its own tokenizer and chat format, text in, score out.

A policy's responses are decoded to text and re-encoded in the judge's own format, so any
``AutoModelForSequenceClassification`` reward model can score any policy, whatever tokenizer
each uses. The format:

- a judge whose tokenizer has a **chat template** sees the conversation as messages: the prompt's
  turns (HH-RLHF text ``"\\n\\nHuman: ...\\n\\nAssistant:"`` is split into user and assistant
  turns; any other prompt is one user turn) followed by the response as the assistant's turn;
- a judge without one sees the plain text ``prompt + response``, encoded with its tokenizer's
  own special tokens (e.g. BOS).

Scores are read by the one scalar-head reader (:func:`leash.models.heads.score_sequences`), at
the last real token, and come back as float64 on the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

from leash.models.factory import freeze
from leash.models.heads import score_sequences
from leash.sequences import evaluating, right_pad

_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def conversation(prompt: str, response: str) -> list[dict[str, str]]:
    """The prompt's turns as chat messages, then the response as the assistant's message."""
    pieces = _HH_TURN.split(prompt)
    if len(pieces) < 3:  # no HH turn markers: the whole prompt is one user turn
        return [{"role": "user", "content": prompt.strip()},
                {"role": "assistant", "content": response.strip()}]
    messages = [
        {"role": _HH_ROLES[role], "content": text.strip()}
        for role, text in zip(pieces[1::2], pieces[2::2], strict=True)
    ]
    if messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()  # the open assistant turn the response fills
    return [*messages, {"role": "assistant", "content": response.strip()}]


class Judge:
    """Scores (prompt, response) texts with a reward model in the model's own format.

    Args:
        model: a scalar ``AutoModelForSequenceClassification`` (frozen here).
        tokenizer: the judge's own tokenizer.
        batch_size: rows per forward pass.
        max_length: longest encoded sequence; longer ones keep their end (the response).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> None:
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or getattr(tokenizer, "model_max_length", None)

    @classmethod
    def load(cls, name_or_path: str, batch_size: int = 32) -> Judge:
        """A judge from a hub name or a local folder (its own tokenizer beside it)."""
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=1)
        return cls(model, tokenizer, batch_size=batch_size)

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of one (prompt, response) in the judge's format (see the module docstring)."""
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(conversation(prompt, response),
                                                      tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(prompt + response)["input_ids"]
        if self.max_length and len(ids) > self.max_length:
            ids = ids[-self.max_length :]
        return ids

    @torch.no_grad()
    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """(N,) float64 scores of N (prompt, response) texts."""
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        device = next(self.model.parameters()).device
        scores = []
        with evaluating(self.model):
            for start in range(0, len(encoded), self.batch_size):
                ids, mask = right_pad(encoded[start : start + self.batch_size], pad)
                scores.append(score_sequences(self.model, ids.to(device), mask.to(device)).cpu())
        return torch.cat(scores).double() if scores else torch.zeros(0, dtype=torch.float64)
