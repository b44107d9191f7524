"""Reading a scalar head off a network: the one reader for reward models, critics and judges.

A score is the scalar head applied to the transformer's hidden state, read at a position picked
**from the attention mask**. Hugging Face's ``*ForSequenceClassification`` pools at the last token
that is not ``pad_token_id`` instead, which is wrong for GPT-2-style tokenizers that pad with
EOS: a response ending in EOS would be read one token early. So these functions run the model's
backbone (``base_model_prefix``) and its ``score`` head themselves. That works for every HF
architecture whose classifier head is called ``score`` (GPT-2, Llama, Mistral, Qwen, ...) and
for a PEFT-wrapped one (the LoRA layers live inside the backbone; PEFT keeps a trainable copy of
``score``). Position ids count real tokens only, so left-padded rows score like unpadded ones.
"""

from __future__ import annotations

import torch
from peft import PeftModel

from leash.sequences import last_token_index, positions_from_mask


def backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer backbone and ``score`` head of a (possibly PEFT-wrapped) scalar model."""
    classifier = model.get_base_model() if isinstance(model, PeftModel) else model
    prefix = getattr(classifier, "base_model_prefix", "")
    if not hasattr(classifier, prefix) or not hasattr(classifier, "score"):
        raise TypeError(
            f"{type(classifier).__name__} needs a backbone (base_model_prefix) and a `score` head"
        )
    return getattr(classifier, prefix), classifier.score


def last_hidden(
    backbone: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """(B, T, H) final hidden states, positions counting real tokens only (left padding safe)."""
    return backbone(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions_from_mask(attention_mask),
        use_cache=False,
    ).last_hidden_state


def score_sequences(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Scalar score of each sequence, read at its last real token (see the module docstring).

    Args:
        model: an ``AutoModelForSequenceClassification`` with ``num_labels=1``, or a PEFT model
            wrapping one.
        input_ids: (B, T) token ids, left or right padded.
        attention_mask: (B, T) 1 on real tokens.
    Returns:
        (B,) float32 scores.
    """
    backbone, head = backbone_and_head(model)
    hidden = last_hidden(backbone, input_ids, attention_mask)
    rows = torch.arange(len(input_ids), device=input_ids.device)
    return head(hidden[rows, last_token_index(attention_mask)]).squeeze(-1).float()


def sequence_values(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """The scalar head applied at every position (a critic's values), the per-position sibling
    of :func:`score_sequences`.

    Args:
        model: an ``AutoModelForSequenceClassification`` (num_labels=1), plain or PEFT-wrapped.
        input_ids: (B, T) token ids (left-padded prompt + right-padded response).
        attention_mask: (B, T) 1 on real tokens.
    Returns:
        (B, T) float32 values (meaningless on padding positions).
    """
    backbone, head = backbone_and_head(model)
    return head(last_hidden(backbone, input_ids, attention_mask)).squeeze(-1).float()
