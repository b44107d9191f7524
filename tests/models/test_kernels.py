"""The fused activation computes GPT-2's gelu_new to float rounding, forward and backward."""

from __future__ import annotations

import copy
import math

import torch
from transformers import AutoModelForCausalLM

from leash.config import Arch, TinyModelConfig
from leash.models.kernels import TanhGELU, fuse_activations
from leash.models.tiny import tiny_model_config
from leash.models.tokenizers import build_word_tokenizer

TOKENIZER = build_word_tokenizer(["a", "b", "c", "d"])


def tiny(arch: Arch) -> torch.nn.Module:
    config = tiny_model_config(
        TinyModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2), TOKENIZER)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).train()


def test_the_fused_kernel_is_the_tanh_formula_by_hand():
    x = torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0])
    expected = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
                for v in x.tolist()]
    torch.testing.assert_close(TanhGELU()(x), torch.tensor(expected), rtol=0, atol=1e-6)


def test_a_fused_gpt2_gives_the_same_logits_and_gradients():
    model = tiny(Arch.gpt2)
    fused = copy.deepcopy(model)
    assert fuse_activations(fused) == 2 and fuse_activations(fused) == 0  # one per layer, once
    assert isinstance(fused.transformer.h[0].mlp.act, TanhGELU)
    ids = torch.randint(0, len(TOKENIZER), (3, 7))
    outputs = []
    for network in (model, fused):
        logits = network(input_ids=ids).logits
        logits.square().mean().backward()
        outputs.append((logits, {n: p.grad for n, p in network.named_parameters()}))
    (plain, plain_grads), (quick, quick_grads) = outputs
    torch.testing.assert_close(quick, plain, rtol=0, atol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(quick_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_architectures_without_gelu_new_are_left_alone():
    model = tiny(Arch.llama)
    before = [type(m) for m in model.modules()]
    assert fuse_activations(model) == 0
    assert [type(m) for m in model.modules()] == before
