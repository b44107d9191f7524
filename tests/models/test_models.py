"""The model factory and the tiny preset load through the real `from_pretrained` path."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from leash.config import Arch, ModelConfig, PeftConfig, TinyModelConfig
from leash.models.factory import load_causal_lm, load_scalar_model, load_tokenizer
from leash.models.tiny import write_tiny_checkpoint
from leash.models.tokenizers import build_byte_tokenizer, build_word_tokenizer


@pytest.fixture(params=[Arch.gpt2, Arch.llama], ids=lambda a: a.value)
def tiny_dir(request, tmp_path):
    cfg = TinyModelConfig(arch=request.param, hidden_size=32, num_layers=1, num_heads=2)
    return write_tiny_checkpoint(cfg, build_word_tokenizer(["a", "b", "c"]), tmp_path / "tiny")


def test_tiny_checkpoint_loads_with_plain_transformers(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    ids = tokenizer("a b c", return_tensors="pt").input_ids
    assert ids.tolist() == [[tokenizer.bos_token_id, 4, 5, 6]]
    logits = model(ids).logits
    assert logits.shape == (1, 4, len(tokenizer))


def test_tiny_preset_is_deterministic_in_its_seed(tmp_path):
    tokenizer = build_byte_tokenizer()
    first = write_tiny_checkpoint(TinyModelConfig(seed=1), tokenizer, tmp_path / "a")
    second = write_tiny_checkpoint(TinyModelConfig(seed=1), tokenizer, tmp_path / "b")
    other = write_tiny_checkpoint(TinyModelConfig(seed=2), tokenizer, tmp_path / "c")
    weights = [AutoModelForCausalLM.from_pretrained(p).state_dict() for p in (first, second, other)]
    name = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(weights[0][name], weights[1][name])
    assert not torch.equal(weights[0][name], weights[2][name])


def test_roles_frozen_and_trainable(tiny_dir):
    cfg = ModelConfig()
    tokenizer = load_tokenizer(str(tiny_dir), cfg)
    reference = load_causal_lm(str(tiny_dir), cfg, tokenizer, trainable=False)
    assert not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    policy = load_causal_lm(str(tiny_dir), cfg, tokenizer, trainable=True)
    assert policy.training
    assert all(p.requires_grad for p in policy.parameters())


def test_lora_policy_trains_only_the_adapter(tiny_dir):
    cfg = ModelConfig()
    tokenizer = load_tokenizer(str(tiny_dir), cfg)
    policy = load_causal_lm(
        str(tiny_dir), cfg, tokenizer, trainable=True, peft=PeftConfig(enabled=True)
    )
    assert isinstance(policy, PeftModel)
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = torch.tensor([[1, 4, 5]])
    with policy.disable_adapter():  # LoRA B starts at zero: disabled == enabled at init
        base = policy(ids).logits
    assert torch.allclose(policy(ids).logits, base)


def test_scalar_model_scores_one_value_per_sequence(tiny_dir):
    cfg = ModelConfig()
    tokenizer = load_tokenizer(str(tiny_dir), cfg)
    reward = load_scalar_model(str(tiny_dir), cfg, tokenizer, trainable=True)
    ids = torch.tensor([[1, 4, 5, 0], [1, 6, 0, 0]])
    scores = reward(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert scores.shape == (2, 1)
    assert reward.config.pad_token_id == tokenizer.pad_token_id
