"""The two workload sizes every contender trains, and their synthetic preference rows.

Standard library only, so the orchestrating parent reads the sizes without importing torch.

- ``tiny``: the shape of leash's offline preset (``model=tiny data=exact``): GPT-2 with hidden
  64, 2 layers, 4 heads, a 30-token word vocabulary, 8-token sequences, 32 pairs per step.
- ``large``: a 3.4M-parameter GPT-2 (hidden 256, 4 layers, 4 heads, 512-token vocabulary) on
  128-token sequences, 4 pairs per step.

Every sequence of a size has the same length (BOS + prompt words, response words + EOS), so no
contender pads and every contender's forward has exactly the same shape.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Size:
    """One workload: model shape, sequence shape, batch and step counts."""

    name: str
    words: int
    """Vocabulary words; the tokenizer adds 4 special tokens (pad, BOS, EOS, unk)."""
    hidden: int
    layers: int
    heads: int
    prompt_words: int
    """Prompt tokens are BOS + these words."""
    response_words: int
    """Response tokens are these words + EOS."""
    pairs_per_step: int
    warmup_steps: int
    """Steps run before timing starts (allocator, caches, lazy initialisation)."""
    timed_steps: int

    @property
    def vocab_size(self) -> int:
        return self.words + 4

    @property
    def prompt_tokens(self) -> int:
        return self.prompt_words + 1

    @property
    def response_tokens(self) -> int:
        return self.response_words + 1

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.timed_steps


SIZES = {
    "tiny": Size("tiny", words=26, hidden=64, layers=2, heads=4, prompt_words=3,
                 response_words=3, pairs_per_step=32, warmup_steps=5, timed_steps=40),
    "large": Size("large", words=508, hidden=256, layers=4, heads=4, prompt_words=63,
                  response_words=63, pairs_per_step=4, warmup_steps=2, timed_steps=4),
}
"""The documented sizes."""

QUICK_STEPS = {"tiny": (2, 4), "large": (1, 2)}
"""(warm-up, timed) steps of ``--quick`` smoke runs."""


def sizes(quick: bool) -> dict[str, Size]:
    """Both sizes by name, with the smoke-test step counts when ``quick``."""
    if not quick:
        return dict(SIZES)
    return {
        name: replace(size, warmup_steps=QUICK_STEPS[name][0], timed_steps=QUICK_STEPS[name][1])
        for name, size in SIZES.items()
    }


def vocabulary(size: Size) -> list[str]:
    """The size's words: ``w0000``, ``w0001``, ..."""
    return [f"w{index:04d}" for index in range(size.words)]


@dataclass(frozen=True)
class TextPair:
    """A preference row as TRL reads it: the responses start with a space (TRL concatenates
    prompt + response text) and TRL appends the EOS text itself."""

    prompt: str
    chosen: str
    rejected: str


def text_pairs(size: Size, count: int, seed: int = 0) -> list[TextPair]:
    """``count`` rows of uniformly drawn words (the same rows for every contender)."""
    draw = random.Random(seed)
    words = vocabulary(size)

    def text(length: int) -> str:
        return " ".join(draw.choice(words) for _ in range(length))

    return [
        TextPair(text(size.prompt_words), " " + text(size.response_words),
                 " " + text(size.response_words))
        for _ in range(count)
    ]
