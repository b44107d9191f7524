"""The shared prompt (leash.models.shared_prompt) gives the whole rows' numbers: the split by
hand, log-probs to 1e-5 and the same gradients on tiny GPT-2 and Llama models (prompts of
different lengths, so left padding inside the batch), reward scores likewise, and the cases
that must fall back to the whole rows."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from peft import TaskType
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from leash.config import Arch, DPOConfig, PeftConfig, RewardConfig, TinyModelConfig
from leash.data.types import PreferenceBatch
from leash.losses.logprobs import response_logps
from leash.models import shared_prompt
from leash.models.factory import wrap_lora
from leash.models.heads import score_sequences
from leash.models.logprobs import pair_logps, shared_prompt_logps
from leash.models.reference import FrozenCopy
from leash.models.shared_prompt import shared_prompt_hidden, shared_split, split_prompt
from leash.models.tiny import tiny_model_config
from leash.models.tokenizers import build_word_tokenizer
from leash.modules.dpo import DPOModule, step_metrics
from leash.modules.reward import RewardModelModule
from leash.sequences import IGNORE_INDEX

TOKENIZER = build_word_tokenizer(["a", "b", "c", "d", "e", "f", "g", "h"])
X = IGNORE_INDEX
# (prompt, chosen, rejected) as token ids; prompts of 1 to 3 tokens, responses of 1 to 4.
PAIRS = [([1, 4, 5], [6, 7, 2], [8, 2]), ([1], [9, 10, 11, 2], [4, 2]),
         ([1, 6], [5, 2], [7, 8, 9, 2])]


def rows(pairs=PAIRS, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chosen rows over rejected rows, right padded as leash's collator pads them."""
    width = max(len(p) + max(len(c), len(r)) for p, c, r in pairs)
    ids, mask, labels = [], [], []
    for side in (1, 2):
        for pair in pairs:
            prompt, response = pair[0], pair[side]
            fill = width - len(prompt) - len(response)
            ids.append(prompt + response + [pad] * fill)
            mask.append([1] * (len(prompt) + len(response)) + [0] * fill)
            labels.append([X] * len(prompt) + response + [X] * fill)
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def tiny(arch: Arch, scalar: bool = False, seed: int = 0) -> torch.nn.Module:
    config = tiny_model_config(
        TinyModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, seed=seed),
        TOKENIZER)
    torch.manual_seed(seed)
    if scalar:
        config.num_labels = 1
        return AutoModelForSequenceClassification.from_config(config).train()
    return AutoModelForCausalLM.from_config(config).train()


@pytest.fixture
def always_share(monkeypatch):
    """Share whatever the size (the tiny models here are below MIN_SHARED_WORK)."""
    monkeypatch.setattr(shared_prompt, "MIN_SHARED_WORK", 0)


def gradients(model: torch.nn.Module, value: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    (value * torch.linspace(0.5, 1.5, len(value))).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_gradients(shared: dict, whole: dict) -> None:
    assert shared.keys() == whole.keys() and len(whole) > 10
    for name, grad in whole.items():
        torch.testing.assert_close(shared[name], grad, rtol=1e-4, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------------- split
def test_the_split_by_hand():
    split = split_prompt(*rows())
    assert split.prompt_mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert (split.prompt_ids * split.prompt_mask).tolist() == [[1, 4, 5], [0, 0, 1], [0, 1, 6]]
    assert split.response_ids.shape == (6, 4)
    assert (split.response_ids * split.response_mask).tolist() == [
        [6, 7, 2, 0], [9, 10, 11, 2], [5, 2, 0, 0], [8, 2, 0, 0], [4, 2, 0, 0], [7, 8, 9, 2]]
    assert split.response_labels.tolist() == [
        [6, 7, 2, X], [9, 10, 11, 2], [5, 2, X, X], [8, 2, X, X], [4, 2, X, X], [7, 8, 9, 2]]


def test_rows_that_do_not_share_a_prompt_are_not_split():
    ids, mask, labels = rows()
    other = ids.clone()
    other[4, 0] = 3  # the second pair's rejected row has another prompt
    assert split_prompt(other, mask, labels) is None
    unlabelled = labels.clone()
    unlabelled[1] = X  # a row without response tokens
    assert split_prompt(ids, mask, unlabelled) is None
    no_prompt = rows([([], [4, 2], [5, 2]), ([1], [6, 2], [7, 2])])  # nothing predicts token 0
    assert split_prompt(*no_prompt) is None


# ------------------------------------------------------------------------------- log-probs
@pytest.mark.parametrize("arch", [Arch.gpt2, Arch.llama])
def test_shared_log_probs_and_gradients_equal_the_whole_rows(arch, always_share):
    model = tiny(arch)
    ids, mask, labels = rows()
    allowed = torch.tensor([2, 4, 5, 6, 7, 8, 9, 10, 11])
    for restrict in (None, allowed):
        shared = shared_prompt_logps(model, ids, mask, labels, restrict)
        shared_grads = gradients(model, shared)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        if restrict is not None:
            logits = logits.masked_fill(~torch.isin(torch.arange(logits.shape[-1]), restrict),
                                        torch.finfo(logits.dtype).min)
        whole = response_logps(logits, labels)[0]
        torch.testing.assert_close(shared, whole, rtol=0, atol=1e-5)
        assert_same_gradients(shared_grads, gradients(model, whole))
        assert (whole < -1).all()  # real log-probs, not zeros


def test_the_shared_path_runs_the_prompt_once(always_share):
    model = tiny(Arch.gpt2)
    calls = []
    model.transformer.register_forward_hook(lambda m, args, kwargs, out: calls.append(
        kwargs["input_ids"].shape), with_kwargs=True)
    logps, counts = pair_logps(model, *rows())
    assert calls == [(3, 3), (6, 4)]  # the prompts, then the six responses
    assert counts.chosen.tolist() == [3, 4, 2] and counts.rejected.tolist() == [2, 2, 4]


def test_an_adapter_policy_and_its_disabled_reference_share_too(always_share):
    policy = wrap_lora(tiny(Arch.gpt2), PeftConfig(enabled=True, r=4, alpha=8.0),
                       TaskType.CAUSAL_LM)
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:  # zero at init: make the adapter change the network
                weight.normal_(0.0, 0.5)
    ids, mask, labels = rows()
    results = []
    for disabled in (False, True):
        with torch.no_grad(), policy.disable_adapter() if disabled else contextlib.nullcontext():
            shared = shared_prompt_logps(policy, ids, mask, labels)
            whole = response_logps(policy(input_ids=ids, attention_mask=mask).logits, labels)[0]
        torch.testing.assert_close(shared, whole, rtol=0, atol=1e-5)
        results.append(shared)
    assert (results[0] - results[1]).abs().max() > 1e-3


def test_where_the_whole_rows_run():
    ids, mask, labels = rows()
    model = tiny(Arch.gpt2)
    assert shared_split(model, ids, mask, labels) is None  # too small to pay (MIN_SHARED_WORK)
    big = shared_prompt.MIN_SHARED_WORK // 32**2 + 1  # prompt tokens that make it pay
    wide = rows([([1] * big, [4, 2], [5, 2])])
    assert shared_split(model, *wide) is not None
    model.gradient_checkpointing_enable()
    assert shared_split(model, *wide) is None  # checkpointing drops the cache
    model.eval()
    assert shared_split(model, *wide) is not None  # ... only in training
    other = copy.deepcopy(model)
    other.config.model_type = "untested"
    assert shared_split(other, *wide) is None


class Forgetful(torch.nn.Module):
    """A backbone that returns a cache but does not read the one it is given."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, position_ids, use_cache, cache=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                          position_ids=position_ids, use_cache=use_cache)


def test_a_backbone_without_a_cache_falls_back_and_one_that_ignores_it_is_caught():
    model = tiny(Arch.gpt2)
    split = split_prompt(*rows())
    with pytest.raises(RuntimeError, match="ignored the prompt's cache"):
        shared_prompt_hidden(Forgetful(model.transformer), split)
    model.gradient_checkpointing_enable()  # GPT-2 then returns no cache in training
    assert shared_prompt_hidden(model.transformer, split) is None


# ---------------------------------------------------------------------------------- scores
@pytest.mark.parametrize("arch", [Arch.gpt2, Arch.llama])
def test_shared_reward_scores_and_gradients_equal_the_whole_rows(arch, always_share):
    model = tiny(arch, scalar=True)
    ids, mask, labels = rows()
    shared = shared_prompt.shared_prompt_scores(model, model.score, ids, mask, labels)
    shared_grads = gradients(model, shared)
    whole = score_sequences(model, ids, mask)
    torch.testing.assert_close(shared, whole, rtol=0, atol=1e-5)
    assert_same_gradients(shared_grads, gradients(model, whole))


# --------------------------------------------------------------------------------- modules
def batch() -> PreferenceBatch:
    ids, mask, labels = rows()
    c, r = slice(0, 3), slice(3, 6)
    return PreferenceBatch(ids[c], mask[c], labels[c], ids[r], mask[r], labels[r],
                           index=torch.arange(3))


def test_modules_give_the_same_step_shared_or_not(monkeypatch):
    policy, reference = tiny(Arch.gpt2), tiny(Arch.gpt2, seed=1)
    dpo = DPOModule(policy, FrozenCopy(reference), DPOConfig(beta=1.0, reference="copy"))
    reward = RewardModelModule(tiny(Arch.llama, scalar=True), RewardConfig())
    steps = {}
    for work in (0, 2**62):  # shared, then whole rows
        monkeypatch.setattr(shared_prompt, "MIN_SHARED_WORK", work)
        steps[work] = ({k: v.item() for k, v in step_metrics(dpo.compute(batch())).items()},
                       {k: v.item() for k, v in reward.compute(batch()).metrics.items()})
    for shared, whole in zip(steps[0], steps[2**62], strict=True):
        assert shared == pytest.approx(whole, abs=1e-5)
    assert abs(steps[0][0]["rewards/margins"]) > 1e-3  # the reference differs from the policy
