"""Ancestral sampling from a causal LM: the one sampler PPO rollouts and the evaluator share.

Pure sampling from ``softmax(logits / temperature)`` (no top-k, no top-p), token by token with a
KV cache, stopping a row at EOS and cutting it at ``max_new_tokens``. Prompts are left padded and
positions count real tokens only (``position_ids = cumsum(mask) - 1``), so a prompt scores the
same alone or in a padded batch; the exact oracle uses the same convention.

An optional set of allowed token ids restricts the policy (e.g. a task's response words + EOS):
every other logit is masked before the softmax, so the policy that is sampled is exactly the one
the oracle enumerates. Anything that scores these samples should mask the same way
(:func:`restrict_logits`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Samples:
    """Sampled responses, one entry per sample, grouped by prompt (prompt 0's samples first)."""

    prompt_index: list[int]
    """Index of the sample's prompt in the list that was sampled from."""
    response_ids: list[list[int]]
    """Generated token ids without padding; the final EOS is included when the sample has one."""
    ended: list[bool]
    """Whether the sample ended with EOS (False: cut at ``max_new_tokens``)."""
    text: list[str]
    """Decoded response without special tokens (EOS not written)."""

    def __len__(self) -> int:
        return len(self.prompt_index)


SampleFn = Callable[[list[str], int], Samples]
"""``sample_fn(prompts, num_samples)``: a sampler with its model and settings bound."""


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put a model in eval mode (no dropout) for the block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into a left-padded batch so that generation appends on the right.

    Returns:
        input_ids (B, P) and attention_mask (B, P), P the longest sequence.
    """
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            input_ids[row, width - len(sequence) :] = torch.tensor(list(sequence))
            attention_mask[row, width - len(sequence) :] = 1
    return input_ids, attention_mask



def right_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack token lists into a right-padded batch (responses, whole sequences to score).

    Returns:
        input_ids (B, T) and attention_mask (B, T), T the longest sequence and at least 1, so
        that a batch of empty responses still makes a tensor.
    """
    width = max(1, max(len(sequence) for sequence in sequences))
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    return input_ids, attention_mask

def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only: (B, T) mask -> (B, T) ``cumsum - 1`` (pads 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def restrict_logits(logits: torch.Tensor, allowed_token_ids: torch.Tensor | None) -> torch.Tensor:
    """Mask every logit outside ``allowed_token_ids`` so the policy only produces those tokens.

    The masked value is the dtype's most negative finite number, not -inf: softmax still gives
    exactly 0, and a masked log-prob multiplied by a 0 mask stays 0 instead of becoming NaN.

    Args:
        logits: (..., V) scores.
        allowed_token_ids: (A,) ids to keep; None keeps the whole vocabulary.
    Returns:
        (..., V) logits.
    """
    if allowed_token_ids is None:
        return logits
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    allowed[allowed_token_ids.to(logits.device)] = True
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


def _cache_keyword(model: torch.nn.Module) -> str:
    """The forward keyword of the KV cache: ``cache`` in recent transformers, else the old name.

    A PEFT wrapper's forward only shows ``**kwargs``: read the wrapped model's signature.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def _sample_token(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One ancestral draw per row from (B, V) logits -> (B,) token ids."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    allowed_token_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a continuation of every prompt with a KV-cached loop, in eval mode.

    Reproducible: all randomness comes from ``generator`` (on the model's device), or from the
    global torch RNG when it is None. Generation stops early once every row has emitted EOS.

    Args:
        model: a Hugging Face causal LM.
        input_ids: (B, P) prompts, left padded.
        attention_mask: (B, P) 1 on real prompt tokens.
        max_new_tokens: cut responses after this many tokens (EOS included).
        eos_token_id: the token that ends a response.
        pad_token_id: written after EOS.
        temperature: divides the logits before the softmax (> 0).
        generator: source of randomness.
        allowed_token_ids: (A,) restricts the policy to these tokens (see :func:`restrict_logits`).
    Returns:
        response_ids (B, T) padded with ``pad_token_id`` after EOS, and response_mask (B, T) with
        1 on real tokens, EOS included; T <= max_new_tokens is the longest response.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    cache_keyword = _cache_keyword(model)
    batch = input_ids.shape[0]
    positions = positions_from_mask(attention_mask)
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    tokens: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    with evaluating(model):
        output = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            use_cache=True,
        )
        next_position = positions[:, -1:] + 1
        for step in range(max_new_tokens):
            logits = restrict_logits(output.logits[:, -1, :], allowed_token_ids)
            token = _sample_token(logits, temperature, generator)
            token = torch.where(finished, torch.full_like(token, pad_token_id), token)
            masks.append(~finished)
            tokens.append(token)
            finished = finished | (token == eos_token_id)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], 1)
            output = model(
                input_ids=token[:, None],
                attention_mask=attention_mask,
                position_ids=next_position,
                use_cache=True,
                **{cache_keyword: getattr(output, cache_keyword)},
            )
            next_position = next_position + 1
    return torch.stack(tokens, dim=1), torch.stack(masks, dim=1).long()


def sample_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    allowed_token_ids: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> Samples:
    """Draw ``num_samples`` responses for every prompt (text in, :class:`Samples` out).

    Prompts are encoded with the tokenizer's special tokens (e.g. BOS) and left padded; rows are
    the prompts each repeated ``num_samples`` times, generated ``batch_size`` rows at a time
    (all at once when None). Settings are those of :func:`generate`.
    """
    device = next(model.parameters()).device
    encoded = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    rows = [index for index in range(len(prompts)) for _ in range(num_samples)]
    step = batch_size or max(len(rows), 1)
    response_ids: list[list[int]] = []
    ended: list[bool] = []
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        input_ids, attention_mask = left_pad([encoded[i] for i in chunk], tokenizer.pad_token_id)
        ids, mask = generate(
            model,
            input_ids.to(device),
            attention_mask.to(device),
            max_new_tokens,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
            temperature=temperature,
            generator=generator,
            allowed_token_ids=allowed_token_ids,
        )
        for row_ids, row_mask in zip(ids.tolist(), mask.tolist(), strict=True):
            tokens = row_ids[: sum(row_mask)]
            response_ids.append(tokens)
            ended.append(bool(tokens) and tokens[-1] == tokenizer.eos_token_id)
    text = [tokenizer.decode(tokens, skip_special_tokens=True) for tokens in response_ids]
    return Samples(prompt_index=rows, response_ids=response_ids, ended=ended, text=text)
