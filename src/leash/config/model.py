"""Schema of the `model` and `peft` groups: which network each role loads, and how."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leash.config.enums import Arch, DType
from leash.config.fields import fraction, positive, seed_field


@dataclass
class TinyModelConfig:
    """A small randomly initialised causal LM, built locally (no download)."""

    arch: Arch = Arch.gpt2
    """Architecture family of the tiny model."""
    hidden_size: int = positive(64)
    """Width of the residual stream."""
    num_layers: int = positive(2)
    """Transformer blocks."""
    num_heads: int = positive(4)
    """Attention heads (must divide `hidden_size`)."""
    max_position_embeddings: int = positive(256)
    """Longest sequence the model accepts."""
    seed: int = seed_field(0)
    """Seed of the random initialisation."""
    tokenizer: str = field(default="auto", metadata={"choices": ("auto", "bpe")})
    """`auto`: a task's word-level tokenizer, else the byte tokenizer; `bpe`: a GPT-2-style
    byte-level BPE trained on the train split's text of `data.path` (real data only)."""
    bpe_vocab_size: int = field(default=2048, metadata={"ge": 257})
    """Most tokens of the `bpe` tokenizer (256 bytes + `<|endoftext|>` at least)."""


@dataclass
class PeftConfig:
    """Optional LoRA adapter around the policy (and, for PPO, the critic)."""

    enabled: bool = False
    """Wrap the model with a LoRA adapter."""
    r: int = positive(8)
    """LoRA rank."""
    alpha: float = positive(16.0)
    """LoRA scaling numerator (`alpha / r` scales the update)."""
    dropout: float = fraction(0.0)
    """Dropout on the LoRA input."""
    target_modules: Any = "all-linear"
    """Module names to adapt, or `all-linear`."""


@dataclass
class ModelConfig:
    """Which network to load for each role, and how."""

    name_or_path: str = "tiny"
    """Hugging Face hub name, local folder, or `tiny` for the locally built preset."""
    tokenizer: str | None = None
    """Tokenizer name or folder; None uses `name_or_path` (the tiny preset builds its own)."""
    dtype: DType = DType.float32
    """Parameter dtype of the loaded weights."""
    attn_implementation: str | None = field(
        default=None,
        metadata={"choices": ("eager", "sdpa", "flash_attention_2", "flex_attention")},
    )
    """`eager`, `sdpa`, `flash_attention_2` or `flex_attention`; None lets transformers choose."""
    gradient_checkpointing: bool = False
    """Trade compute for activation memory in the trained models."""
    trust_remote_code: bool = False
    """Allow model code from the hub (off unless you trust the repository)."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the `tiny` preset (ignored for hub models)."""
