"""Ancestral sampling from a causal LM: the one sampler PPO rollouts and the evaluator share.

Pure sampling from ``softmax(logits / temperature)`` (no top-k, no top-p), token by token with a
KV cache, stopping a row at EOS and cutting it at ``max_new_tokens``. Prompts are left padded and
positions count real tokens only (``position_ids = cumsum(mask) - 1``), so a prompt scores the
same alone or in a padded batch; the exact oracle uses the same convention.

An optional set of allowed token ids restricts the policy (e.g. a task's response words + EOS):
every other logit is masked before the softmax, so the policy that is sampled is exactly the one
the oracle enumerates. Anything that scores these samples should mask the same way
(:func:`leash.sequences.restrict_logits`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import NamedTuple

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from leash.data.tasks import SyntheticTask
from leash.data.types import SampleFn, Samples
from leash.sequences import evaluating, left_pad, positions_from_mask, restrict_logits


def _cache_keyword(model: torch.nn.Module) -> str:
    """The forward keyword of the KV cache: ``cache`` in recent transformers, else the old name.

    A PEFT wrapper's forward only shows ``**kwargs``: read the wrapped model's signature.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


Generators = torch.Generator | Sequence[torch.Generator] | None
"""The randomness of a batch: one generator for every row, one per row, or the global RNG."""


def _sample_token(logits: torch.Tensor, temperature: float, generator: Generators) -> torch.Tensor:
    """One ancestral draw per row from (B, V) logits -> (B,) token ids.

    With one generator per row, row i's token is ``argmax(p_i / e_i)`` for ``e_i`` i.i.d.
    Exp(1) noise from its own generator: a draw from ``p_i`` (the exponential race, the same one
    ``torch.multinomial`` runs for one sample) that does not depend on the other rows.
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    noise = torch.stack([torch.empty_like(probs[0]).exponential_(generator=g) for g in generator])
    return (probs / noise.clamp(min=torch.finfo(noise.dtype).tiny)).argmax(dim=-1)


class Generated(NamedTuple):
    """Sampled responses, and what the sampler says each token's log-prob was."""

    response_ids: torch.Tensor
    """(B, T) sampled tokens, ``pad_token_id`` after EOS."""
    response_mask: torch.Tensor
    """(B, T) 1 on real tokens, EOS included."""
    logprobs: torch.Tensor
    """(B, T) log-prob of each sampled token under ``softmax(logits / temperature)`` of the
    (restricted) logits it was drawn from; 0 after EOS. A trainer's forward on the same rows
    must give the same values: the gap is ``rollout/logprob_gap``."""


def _logprob(logits: torch.Tensor, temperature: float, token: torch.Tensor) -> torch.Tensor:
    """(B,) log-prob of each drawn token under ``softmax(logits / temperature)``."""
    logps = torch.log_softmax(logits.float() / temperature, dim=-1)
    return logps.gather(-1, token[:, None]).squeeze(-1)


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    temperature: float = 1.0,
    generator: Generators = None,
    allowed_token_ids: torch.Tensor | None = None,
) -> Generated:
    """Sample a continuation of every prompt with a KV-cached loop, in eval mode.

    Reproducible: all randomness comes from ``generator`` (on the model's device): one for the
    batch, one per row (a row's response then depends on its own generator only), or the global
    RNG when None. It stops early once every row has emitted EOS.

    Args:
        model: a Hugging Face causal LM.
        input_ids: (B, P) prompts, left padded.
        attention_mask: (B, P) 1 on real prompt tokens.
        max_new_tokens: cut responses after this many tokens (EOS included).
        eos_token_id: the token that ends a response.
        pad_token_id: written after EOS.
        temperature: divides the logits before the softmax (> 0).
        generator: source of randomness (see above).
        allowed_token_ids: (A,) restricts the policy to these tokens (``restrict_logits``).
    Returns:
        :class:`Generated`, T <= max_new_tokens the longest response.
    """
    if temperature <= 0 or max_new_tokens <= 0:
        raise ValueError(f"temperature and max_new_tokens must be > 0, got {temperature}, "
                         f"{max_new_tokens}")
    cache_keyword = _cache_keyword(model)
    positions = positions_from_mask(attention_mask)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    tokens: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    logprobs: list[torch.Tensor] = []
    with evaluating(model):
        output = model(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=positions, use_cache=True)
        next_position = positions[:, -1:] + 1
        for step in range(max_new_tokens):
            logits = restrict_logits(output.logits[:, -1, :], allowed_token_ids)
            token = _sample_token(logits, temperature, generator)
            token = torch.where(finished, torch.full_like(token, pad_token_id), token)
            logprobs.append(torch.where(finished, 0.0, _logprob(logits, temperature, token)))
            masks.append(~finished)
            tokens.append(token)
            finished = finished | (token == eos_token_id)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], 1)
            cache = {cache_keyword: getattr(output, cache_keyword)}
            output = model(input_ids=token[:, None], attention_mask=attention_mask,
                           position_ids=next_position, use_cache=True, **cache)
            next_position = next_position + 1
    return Generated(torch.stack(tokens, dim=1), torch.stack(masks, dim=1).long(),
                     torch.stack(logprobs, dim=1))


def sample_responses(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    num_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    allowed_token_ids: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> Samples:
    """Draw ``num_samples`` responses for every prompt (token ids in, :class:`Samples` out).

    Rows are the prompts each repeated ``num_samples`` times, left padded and generated
    ``batch_size`` rows at a time (all at once when None). Settings are those of
    :func:`generate`; the tokenizer gives EOS, the pad id and the decoded text.
    """
    device = next(model.parameters()).device
    rows = [index for index in range(len(prompt_ids)) for _ in range(num_samples)]
    step = batch_size or max(len(rows), 1)
    response_ids: list[list[int]] = []
    ended: list[bool] = []
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        input_ids, attention_mask = left_pad([prompt_ids[i] for i in chunk], tokenizer.pad_token_id)
        ids, mask, _ = generate(
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


def task_sampler(
    task: SyntheticTask,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> SampleFn:
    """A ``sample_fn(prompts, num_samples)`` for a built-in task: the policy restricted to the
    task's response words + EOS, responses cut at its ``max_response_length`` tokens."""

    def sample_fn(prompts: list[str], num_samples: int) -> Samples:
        return sample_responses(
            model,
            tokenizer,
            [tokenizer(prompt)["input_ids"] for prompt in prompts],
            num_samples,
            max_new_tokens=task.config.max_response_length,
            temperature=temperature,
            generator=generator,
            allowed_token_ids=task.allowed_token_ids(),
        )

    return sample_fn
