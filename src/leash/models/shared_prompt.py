"""The two responses of a preference pair scored with their prompt computed once.

A DPO or reward-model batch holds every prompt twice: in its chosen row and in its rejected row.
Here the backbone runs the B prompts once with a key/value cache, the cache is repeated for the
2B responses (chosen rows, then rejected rows) and the responses attend to it. Attention sees
the same keys and values as in the whole rows, so the hidden states are the same (to float
rounding) and gradients reach the prompt through the cache, for ``P / (P + R)`` less work in
every forward and backward (a quarter when prompt and responses are equally long).

It is used only where that is known to hold: architectures whose backbone returns a
``transformers`` ``Cache`` that keeps gradients, whose causal-LM logits are ``lm_head(hidden)``
(:data:`SHARED_PROMPT_MODELS`), without gradient checkpointing (which drops the cache), and on
rows laid out as leash lays them out (a prompt, then the labelled response); and only where it
pays (:data:`MIN_SHARED_WORK`): the second backbone call costs a fixed few milliseconds of
Python. Everywhere else the callers run the whole rows.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
from peft import PeftModel
from transformers.cache_utils import Cache

from leash.sequences import IGNORE_INDEX, last_token_index, positions_from_mask

SHARED_PROMPT_MODELS = frozenset({"gpt2", "llama"})
"""``config.model_type`` of the architectures whose cache path is tested to give the whole rows'
log-probs, scores and gradients (tests/models/test_shared_prompt.py)."""


MIN_SHARED_WORK = 2**22
"""Least ``pairs x prompt tokens x hidden size**2`` (the work the shared prompt saves, per
layer and up to a constant) worth a second backbone call. On this project's 2-core CPU the
benchmarks' tiny size (32 x 4 x 64**2 = 2**19) runs slower shared (a forward without gradients
6.6 ms instead of 4.7), the large one (4 x 64 x 256**2 = 2**24) a quarter faster."""


class PromptSplit(NamedTuple):
    """Chosen-over-rejected rows as one prompt per pair and two responses."""

    prompt_ids: torch.Tensor
    """(B, P) prompts, left padded."""
    prompt_mask: torch.Tensor
    """(B, P) 1 on real prompt tokens."""
    response_ids: torch.Tensor
    """(2B, R) chosen responses, then rejected ones, right padded."""
    response_mask: torch.Tensor
    """(2B, R) 1 on real response tokens."""
    response_labels: torch.Tensor
    """(2B, R) the labels of the response columns (IGNORE_INDEX on padding)."""


def split_prompt(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> PromptSplit | None:
    """Split (2B, T) chosen-over-rejected rows where each row's response starts (its first
    label); None when the rows do not share their prompts: a row without a label or without a
    real prompt token just before it, or a chosen row whose prompt (ids or mask) differs from
    its rejected row's.

    One device-to-host copy (the check and the two widths).
    """
    rows, width = input_ids.shape
    pairs = rows // 2
    labelled = labels != IGNORE_INDEX
    start = labelled.int().argmax(-1)  # first labelled column (0 for a row without labels)
    columns = torch.arange(width, device=input_ids.device)
    outside = columns >= start[:pairs, None]  # not the prompt of the pair
    same = ((input_ids[:pairs] == input_ids[pairs:]) | outside).all() & (
        (attention_mask[:pairs] == attention_mask[pairs:]) | outside
    ).all()
    rows_index = torch.arange(rows, device=input_ids.device)
    predicted = attention_mask[rows_index, (start - 1).clamp(min=0)].bool() & (start > 0)
    shared = (same & labelled.any(-1).all() & (start[:pairs] == start[pairs:]).all()
              & predicted.all())  # the token before each response is a real prompt token
    end = last_token_index(attention_mask) + 1
    ok, prompt_width, response_width = torch.stack(
        [shared.long(), start.max(), (end - start).max()]
    ).tolist()
    if not ok:
        return None
    source = start[:pairs, None] - prompt_width + torch.arange(prompt_width, device=start.device)
    prompt_ids = input_ids[:pairs].gather(1, source.clamp(min=0))
    prompt_mask = attention_mask[:pairs].gather(1, source.clamp(min=0)) * (source >= 0)
    source = start[:, None] + torch.arange(response_width, device=start.device)
    inside = source < width
    source = source.clamp(max=width - 1)
    return PromptSplit(
        prompt_ids,
        prompt_mask,
        input_ids.gather(1, source),
        attention_mask.gather(1, source) * inside,
        labels.gather(1, source).masked_fill(~inside, IGNORE_INDEX),
    )


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a PEFT wrapper (its LoRA layers live inside it)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def shares_prompt(model: torch.nn.Module) -> bool:
    """Whether ``model`` (plain or PEFT-wrapped) may run the shared-prompt path (module
    docstring): a tested architecture, not checkpointing its gradients in training."""
    inner = _unwrapped(model)
    backbone = getattr(inner, getattr(inner, "base_model_prefix", ""), None)
    checkpointing = getattr(backbone, "gradient_checkpointing", False) and backbone.training
    model_type = getattr(getattr(inner, "config", None), "model_type", None)
    return backbone is not None and model_type in SHARED_PROMPT_MODELS and not checkpointing


def shared_split(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
) -> PromptSplit | None:
    """The rows' :func:`split_prompt` where ``model`` :func:`shares_prompt` and sharing pays
    (:data:`MIN_SHARED_WORK`); None where the whole rows should run."""
    if not shares_prompt(model):
        return None
    square = getattr(_unwrapped(model).config, "hidden_size", 0) ** 2
    if len(input_ids) // 2 * input_ids.shape[1] * square < MIN_SHARED_WORK:
        return None  # no prompt is wider than its rows: not worth splitting them
    split = split_prompt(input_ids, attention_mask, labels)
    if split is None or split.prompt_ids.numel() * square < MIN_SHARED_WORK:
        return None
    return split


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer backbone (``base_model_prefix``) of a plain or PEFT-wrapped model."""
    inner = _unwrapped(model)
    return getattr(inner, inner.base_model_prefix)


def lm_head_of(model: torch.nn.Module) -> torch.nn.Module:
    """The output embedding (``lm_head``) of a plain or PEFT-wrapped causal LM."""
    return _unwrapped(model).get_output_embeddings()


def _cache_keyword(backbone: torch.nn.Module) -> str:
    """``cache`` (transformers 5) or ``past_key_values`` (before): the forward's cache argument
    and the output field holding it."""
    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else (
        "past_key_values"
    )


def shared_prompt_hidden(
    backbone: torch.nn.Module, split: PromptSplit
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Final hidden states of the last prompt token of each pair (B, H) and of every response
    token (2B, R, H), the prompt run once; None when the backbone returns no ``Cache`` object
    (older transformers), so the caller runs the whole rows.

    Raises:
        RuntimeError: the responses did not attend to the cache (it did not grow by R).
    """
    keyword = _cache_keyword(backbone)
    prompt = backbone(
        input_ids=split.prompt_ids,
        attention_mask=split.prompt_mask,
        position_ids=positions_from_mask(split.prompt_mask),
        use_cache=True,
    )
    cache = getattr(prompt, keyword, None)
    if not isinstance(cache, Cache):
        return None
    pairs, prompt_width = split.prompt_ids.shape
    cache.reorder_cache(torch.arange(pairs, device=split.prompt_ids.device).repeat(2))
    mask = torch.cat([split.prompt_mask.repeat(2, 1), split.response_mask], dim=1)
    responses = backbone(
        input_ids=split.response_ids,
        attention_mask=mask,
        position_ids=positions_from_mask(mask)[:, prompt_width:],
        use_cache=True,
        **{keyword: cache},
    )
    if cache.get_seq_length() != mask.shape[1]:
        raise RuntimeError(f"{type(backbone).__name__} ignored the prompt's cache")
    return prompt.last_hidden_state[:, -1], responses.last_hidden_state


def response_predictors(last_prompt: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
    """(2B, R, H) hidden states that predict each response token: the last prompt token's for
    the first one (the same for chosen and rejected), the previous response token's after."""
    first = last_prompt.repeat(2, 1).unsqueeze(1)
    return torch.cat([first, responses[:, :-1]], dim=1)


def shared_prompt_scores(
    model: torch.nn.Module,
    head: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor | None:
    """Scalar scores (2B,) of chosen-over-rejected rows read by ``head`` at each row's last real
    token (as :func:`leash.models.heads.score_sequences` reads them), the prompt run once; None
    where :func:`shared_split` says no or the backbone gives no cache."""
    split = shared_split(model, input_ids, attention_mask, labels)
    hidden = None if split is None else shared_prompt_hidden(backbone_of(model), split)
    if hidden is None:
        return None
    responses = hidden[1]
    rows = torch.arange(len(responses), device=responses.device)
    return head(responses[rows, last_token_index(split.response_mask)]).squeeze(-1).float()
