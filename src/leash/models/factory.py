"""One factory for every model role: policy, reference, reward model and critic.

A role is loaded from a Hugging Face hub name or a local folder (the tiny preset is a local
folder by the time it gets here), with the configured dtype and attention implementation,
optionally wrapped in a LoRA adapter. Frozen roles are put in eval mode with gradients off.
"""

from __future__ import annotations

import logging

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from leash.config import DType, ModelConfig, PeftConfig

log = logging.getLogger(__name__)

_TORCH_DTYPES = {
    DType.float32: torch.float32,
    DType.bfloat16: torch.bfloat16,
    DType.float16: torch.float16,
    DType.auto: "auto",
}


def load_tokenizer(path: str, cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer at ``path``, with a pad token (EOS when the model has none, as GPT-2)."""
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_kwargs(cfg: ModelConfig) -> dict:
    kwargs: dict = {"dtype": _TORCH_DTYPES[cfg.dtype], "trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    return kwargs


def load_causal_lm(
    path: str,
    cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    trainable: bool,
    peft: PeftConfig | None = None,
) -> PreTrainedModel | PeftModel:
    """A causal LM for the policy (trainable) or the reference (frozen)."""
    model = AutoModelForCausalLM.from_pretrained(path, **_load_kwargs(cfg))
    return _prepare(model, cfg, tokenizer, trainable, peft, TaskType.CAUSAL_LM)


def load_scalar_model(
    path: str,
    cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    trainable: bool,
    peft: PeftConfig | None = None,
) -> PreTrainedModel | PeftModel:
    """A sequence model with one scalar output (reward model or critic), read at the last token.

    Loading a causal-LM checkpoint this way keeps the transformer and initialises a fresh scalar
    head, by design: that is one info line. transformers' own load report is silenced; any
    other weight that is missing, unexpected or of the wrong shape is a warning naming it.
    """
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, output_loading_info=True, **_load_kwargs(cfg)
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    new_head = {key for key in loading["missing_keys"] if key.split(".")[0] == "score"}
    if new_head:
        log.info("%s: scalar head %s initialised fresh", path, ", ".join(sorted(new_head)))
    others = {
        kind: sorted(keys - new_head if kind == "missing_keys" else keys)
        for kind, keys in loading.items() if kind != "error_msgs"
    }  # fmt: skip
    if any(others.values()):
        log.warning("%s: loading it as a scalar model: %s", path,
                    "; ".join(f"{kind} {keys}" for kind, keys in others.items() if keys))
    return _prepare(model, cfg, tokenizer, trainable, peft, TaskType.SEQ_CLS)


def _prepare(
    model: PreTrainedModel,
    cfg: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    trainable: bool,
    peft: PeftConfig | None,
    task_type: TaskType,
) -> PreTrainedModel | PeftModel:
    # The score of a sequence model is read at the last non-pad token: it must know the pad id.
    model.config.pad_token_id = tokenizer.pad_token_id
    if not trainable:
        return freeze(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if peft is not None and peft.enabled:
        return wrap_lora(model, peft, task_type)
    return model.train()


def wrap_lora(model: PreTrainedModel, cfg: PeftConfig, task_type: TaskType) -> PeftModel:
    """Wrap ``model`` in a LoRA adapter; only adapter weights (and a new head) stay trainable."""
    lora = LoraConfig(
        task_type=task_type,
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
    )
    return get_peft_model(model, lora)


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every ``nn.Dropout`` probability to 0 (TRL's default for DPO and PPO).

    DPO's implicit reward compares two forward passes and PPO's first ratio must be exactly 1:
    dropout noise in either forward would break both, and would make an adapter-disabled
    reference stochastic.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no gradients: what every frozen role (reference, fixed reward) needs."""
    model.eval()
    model.requires_grad_(False)
    return model


def save_policy(
    model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, path
) -> None:
    """Write a policy in Hugging Face format; a LoRA policy is merged so it loads as a plain LM.

    Merging folds the adapter into the base weights in place: call this once training is over.
    """
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
