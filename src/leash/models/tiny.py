"""The `tiny` preset: a small randomly initialised GPT-2 or Llama, written as a real checkpoint.

The model is built from a config, saved with ``save_pretrained`` beside its tokenizer, and every
later stage loads it back with ``from_pretrained``: the offline default exercises exactly the
loading path a hub model takes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from leash.config import Arch, TinyModelConfig


def tiny_model_config(cfg: TinyModelConfig, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """A transformers config of the requested family, sized by ``cfg``, for ``tokenizer``."""
    special = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if cfg.arch == Arch.gpt2:
        return GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=cfg.hidden_size,
            n_layer=cfg.num_layers,
            n_head=cfg.num_heads,
            n_positions=cfg.max_position_embeddings,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **special,
        )
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=4 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        **special,
    )


def write_tiny_checkpoint(
    cfg: TinyModelConfig, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path
) -> Path:
    """Build the tiny model with seeded weights and save it with its tokenizer in ``out_dir``."""
    out_dir = Path(out_dir)
    config = tiny_model_config(cfg, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
