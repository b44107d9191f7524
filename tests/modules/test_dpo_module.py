"""DPOModule: step-0 identities, reference strategies, invariances, training and metrics.

Batches are built here from a few word-level pairs (the shared data module is not needed):
prompt ``BOS + words``, response ``words + EOS``, chosen and rejected right padded to one T,
labels IGNORE_INDEX on prompt and padding.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import lightning
import numpy as np
import pytest
import torch
from peft import TaskType
from torch.utils.data import DataLoader
from transformers import AutoModelForCausalLM

from helpers import quiet_trainer
from leash.config import Arch, DPOConfig, PeftConfig, Scheduler, TinyModelConfig
from leash.data.types import PreferenceBatch
from leash.losses.preference import LOSS_TYPES
from leash.models.factory import wrap_lora
from leash.models.reference import (
    DisabledAdapter,
    FrozenCopy,
    OnDemand,
    Precomputed,
    build_reference,
)
from leash.models.tiny import tiny_model_config
from leash.models.tokenizers import build_word_tokenizer
from leash.modules.dpo import DPOModule, precompute_reference_logps
from leash.sequences import IGNORE_INDEX

TOKENIZER = build_word_tokenizer(["a", "b", "c", "d", "e", "f", "g", "h"])
LN2 = math.log(2)


class Pair(NamedTuple):
    prompt: str
    chosen: str
    rejected: str
    chosen_gold: float | None = None
    rejected_gold: float | None = None


TRAIN = [
    Pair("a b", "c d", "e"),
    Pair("b", "c", "f g h"),
    Pair("c a", "d d e", "g"),
    Pair("d", "e f", "h a"),
    Pair("e f g", "a", "b c"),
    Pair("f", "g h a b", "c"),
    Pair("g h", "b", "a a"),
    Pair("h", "d e", "f"),
]
VAL = [
    Pair("a", "b c", "d", 1.0, -0.5),
    Pair("b c", "e", "f g", 0.25, 0.75),
    Pair("d", "h a", "b", 2.0, 0.0),
    Pair("e", "c", "g h", -1.0, -1.5),
]


def _ids(text: str, *, prompt: bool) -> list[int]:
    if prompt:
        return TOKENIZER(text)["input_ids"]
    return TOKENIZER(text, add_special_tokens=False)["input_ids"] + [TOKENIZER.eos_token_id]


def make_batch(pairs: Sequence[Pair], indices: Sequence[int]) -> PreferenceBatch:
    """A PreferenceBatch of ``pairs`` (row indices ``indices``), right padded to one T."""
    prompts = [_ids(p.prompt, prompt=True) for p in pairs]
    chosen = [_ids(p.chosen, prompt=False) for p in pairs]
    rejected = [_ids(p.rejected, prompt=False) for p in pairs]
    width = max(map(len, prompts)) + max(map(len, chosen + rejected))

    def side(responses):
        ids = torch.full((len(pairs), width), TOKENIZER.pad_token_id)
        labels = torch.full((len(pairs), width), IGNORE_INDEX)
        mask = torch.zeros(len(pairs), width, dtype=torch.long)
        for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            end = len(prompt) + len(response)
            ids[row, :end] = torch.tensor(prompt + response)
            labels[row, len(prompt) : end] = torch.tensor(response)
            mask[row, :end] = 1
        return ids, mask, labels

    has_gold = all(p.chosen_gold is not None for p in pairs)
    return PreferenceBatch(
        *side(chosen),
        *side(rejected),
        index=torch.tensor(list(indices)),
        chosen_gold_reward=torch.tensor([p.chosen_gold for p in pairs]) if has_gold else None,
        rejected_gold_reward=torch.tensor([p.rejected_gold for p in pairs]) if has_gold else None,
    )


class Collate:
    """DataLoader collate over ``(index, Pair)`` rows, attaching precomputed log-probs if given."""

    def __init__(self, reference: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.reference = reference

    def __call__(self, rows: list[tuple[int, Pair]]) -> PreferenceBatch:
        batch = make_batch([pair for _, pair in rows], [index for index, _ in rows])
        if self.reference is None:
            return batch
        chosen, rejected = self.reference
        return dataclasses.replace(
            batch,
            reference_chosen_logps=chosen[batch.index],
            reference_rejected_logps=rejected[batch.index],
        )


def loader(pairs, batch_size, reference=None) -> DataLoader:
    return DataLoader(
        list(enumerate(pairs)), batch_size=batch_size, collate_fn=Collate(reference)
    )


def tiny_lm(arch: Arch = Arch.gpt2, seed: int = 0) -> torch.nn.Module:
    cfg = TinyModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, seed=seed)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_model_config(cfg, TOKENIZER)).train()


def algo(**overrides) -> DPOConfig:
    defaults = dict(lr=1e-3, beta=0.1, scheduler=Scheduler.constant, max_steps=5)
    return DPOConfig(**{**defaults, **overrides})


class LossLog(DPOModule):
    """DPOModule that also records each training step's loss (before Lightning scales it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.losses: list[float] = []

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.losses.append(loss.item())
        return loss


def build(
    mode: str, *, batch_size: int = 4, arch: Arch = Arch.gpt2, **overrides
) -> tuple[LossLog, DataLoader]:
    """A DPOModule with reference strategy ``mode`` at step 0, and its train loader."""
    policy = tiny_lm(arch)
    if mode == "copy":
        reference = FrozenCopy(copy.deepcopy(policy))
        return LossLog(policy, reference, algo(reference="copy", **overrides)), loader(
            TRAIN, batch_size
        )
    if mode == "adapter":
        lora = PeftConfig(enabled=True, r=4, alpha=8.0)
        policy = wrap_lora(policy, lora, TaskType.CAUSAL_LM)
        reference = DisabledAdapter(policy)
        return LossLog(policy, reference, algo(reference="adapter", **overrides)), loader(
            TRAIN, batch_size
        )
    logps = precompute_reference_logps(copy.deepcopy(policy), loader(TRAIN, batch_size))
    reference = Precomputed(lambda: copy.deepcopy(policy))
    module = LossLog(policy, reference, algo(reference="precomputed", **overrides))
    return module, loader(TRAIN, batch_size, logps)


def trainer(**overrides) -> lightning.Trainer:
    return quiet_trainer(**{"max_steps": 5, **overrides})


class GradRecorder(lightning.Callback):
    """Keeps the policy's (accumulated) gradients just before each optimizer step."""

    def __init__(self):
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.grads.append(
            {n: p.grad.clone() for n, p in module.policy.named_parameters() if p.grad is not None}
        )


# ------------------------------------------------------------------------------------ step 0
@pytest.mark.parametrize(
    ("mode", "arch"),
    [("copy", Arch.gpt2), ("adapter", Arch.gpt2), ("precomputed", Arch.gpt2),
     ("adapter", Arch.llama)],
)
def test_step_zero_loss_is_ln2_and_rewards_zero(mode, arch):
    module, data = build(mode, arch=arch)
    for batch in data:
        step = module.compute(batch)
        assert step.losses.mean().item() == pytest.approx(LN2, abs=1e-6)
        assert step.chosen_rewards.abs().max().item() < 1e-6
        assert step.rejected_rewards.abs().max().item() < 1e-6
        assert (step.chosen_logps < 0).all() and (step.rejected_logps < 0).all()


def test_step_zero_differs_once_the_reference_differs():
    """Guard for the test above: a different reference gives a loss away from ln 2."""
    policy = tiny_lm()
    module = DPOModule(policy, FrozenCopy(tiny_lm(seed=1)), algo(reference="copy", beta=1.0))
    step = module.compute(next(iter(loader(TRAIN, 4))))
    assert abs(step.losses.mean().item() - LN2) > 1e-3
    assert step.chosen_rewards.abs().max().item() > 1e-3


# -------------------------------------------------------------------------------- invariances
def test_precomputed_and_copy_reference_train_identically():
    runs = {}
    for mode in ("copy", "precomputed"):
        module, data = build(mode, lr=1e-2)
        trainer(max_steps=5).fit(module, data)
        runs[mode] = module.losses
    assert len(runs["copy"]) == 5
    np.testing.assert_allclose(runs["precomputed"], runs["copy"], rtol=0, atol=1e-5)
    assert abs(runs["copy"][-1] - LN2) > 1e-3  # training moved away from step 0


def test_gradient_accumulation_matches_one_big_batch():
    """4 accumulated micro-batches of 2 pairs == 1 batch of 8, in loss and in gradients.

    True because the loss is the mean over pairs and Lightning divides each micro-batch loss by
    the accumulation count: mean of 4 means of 2 == mean of 8. With a sum over pairs the
    accumulated gradient is 1/4 of the big batch's, which the last assertion shows. The
    reference differs from the policy so that the loss is not the trivial ln 2.
    """

    def fresh() -> LossLog:
        return LossLog(tiny_lm(), FrozenCopy(tiny_lm(seed=1)), algo(reference="copy", beta=1.0))

    grads, losses = {}, {}
    for batch_size, accumulate in ((8, 1), (2, 4)):
        module, recorder = fresh(), GradRecorder()
        run = trainer(max_steps=1, accumulate_grad_batches=accumulate, callbacks=[recorder])
        run.fit(module, loader(TRAIN, batch_size))
        assert len(module.losses) == accumulate and len(recorder.grads) == 1
        grads[accumulate], losses[accumulate] = recorder.grads[0], np.mean(module.losses)
    assert losses[4] == pytest.approx(losses[1], abs=1e-6)
    assert abs(losses[1] - LN2) > 1e-3
    assert grads[4].keys() == grads[1].keys() and len(grads[1]) > 0
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[4][name], grad, rtol=0, atol=1e-5, msg=name)

    module, summed = fresh(), {}
    for batch_size, accumulate in ((8, 1), (2, 4)):
        module.policy.zero_grad()
        for batch in loader(TRAIN, batch_size):
            (module.compute(batch).losses.sum() / accumulate).backward()
        summed[accumulate] = {n: p.grad.clone() for n, p in module.policy.named_parameters()}
    name = "transformer.h.0.attn.c_attn.weight"
    torch.testing.assert_close(summed[4][name] * 4, summed[1][name], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(summed[4][name], summed[1][name], atol=1e-5)


# ------------------------------------------------------------------------------------ training
@pytest.mark.parametrize(
    ("loss", "label_smoothing"),
    [("sigmoid", 0.0), ("sigmoid", 0.1), ("robust", 0.2), ("ipo", 0.0), ("hinge", 0.0),
     ("simpo", 0.0)],
)
def test_every_policy_parameter_changes_and_the_reference_does_not(loss, label_smoothing):
    assert loss in LOSS_TYPES
    policy = tiny_lm()
    frozen = copy.deepcopy(policy)
    reference = OnDemand(lambda: frozen) if loss == "simpo" else FrozenCopy(frozen)
    cfg = algo(loss=loss, label_smoothing=label_smoothing, lr=1e-2)
    module = LossLog(policy, reference, cfg)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    trainer(max_steps=3).fit(module, loader(TRAIN, 4))
    assert len(module.losses) == 3 and all(math.isfinite(x) for x in module.losses)
    for name, param in module.named_parameters():
        changed = not torch.equal(param, before[name])
        assert changed == name.startswith("policy."), name
    assert ("reference" in module.roles) == (loss != "simpo")  # SimPO holds no reference


def test_adapter_trains_only_lora_weights_and_reference_stays_the_base():
    module, data = build("adapter", lr=1e-2)
    base = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    trainer(max_steps=3).fit(module, data)
    for name, param in module.policy.named_parameters():
        assert (not torch.equal(param, base[name])) == ("lora_" in name), name
    assert module.roles.keys() == {"policy"}
    batch = next(iter(data))
    step = module.compute(batch)
    assert step.chosen_rewards.abs().max() > 1e-4  # adapter on: the policy left the reference


def test_logged_metrics_and_epoch_level_implicit_reward_model():
    module, data = build("copy", lr=1e-2)
    run = trainer(max_steps=4)
    run.fit(module, data, loader(VAL, 3))
    names = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
             "rewards/margins", "logps/chosen", "logps/rejected"]
    expected = {f"{stage}/{name}" for stage in ("train", "val") for name in names}
    expected |= {"eval/implicit_rm_accuracy", "eval/implicit_rm_gold_accuracy",
                 "eval/implicit_rm_gold_corr"}
    assert expected <= set(run.callback_metrics)

    module.eval()
    with torch.no_grad():
        steps = [module.compute(batch) for batch in loader(VAL, 3)]
    margins = torch.cat([s.chosen_rewards - s.rejected_rewards for s in steps]).numpy()
    gold = np.array([p.chosen_gold - p.rejected_gold for p in VAL])
    metrics = run.callback_metrics
    assert metrics["eval/implicit_rm_accuracy"].item() == pytest.approx(np.mean(margins > 0))
    agree = np.mean(np.sign(margins) == np.sign(gold))
    assert metrics["eval/implicit_rm_gold_accuracy"].item() == pytest.approx(agree)
    corr = np.corrcoef(margins, gold)[0, 1]
    assert metrics["eval/implicit_rm_gold_corr"].item() == pytest.approx(corr, abs=1e-5)
    # val/rewards/accuracies is the batch-size-weighted epoch mean: the same fraction
    assert metrics["val/rewards/accuracies"].item() == pytest.approx(np.mean(margins > 0))


def test_no_gold_metrics_without_gold_rewards():
    module, data = build("copy")
    run = trainer(max_steps=1)
    run.validate(module, loader(TRAIN, 4), verbose=False)
    assert "eval/implicit_rm_accuracy" in run.callback_metrics
    assert "eval/implicit_rm_gold_accuracy" not in run.callback_metrics


# ------------------------------------------------------------------------ reference strategies
def test_precomputed_without_logps_in_the_batch_fails_clearly():
    module = DPOModule(tiny_lm(), Precomputed(tiny_lm), algo(reference="precomputed"))
    with pytest.raises(ValueError, match="precompute_reference_logps"):
        module.compute(make_batch(TRAIN[:2], [0, 1]))


def test_build_reference_picks_one_implementation_per_mode():
    policy = tiny_lm()
    loads = []

    def load() -> torch.nn.Module:
        loads.append(1)
        return copy.deepcopy(policy)

    copied = build_reference("copy", load=load, policy=policy)
    assert isinstance(copied, FrozenCopy) and len(loads) == 1  # loaded once, held
    assert not any(p.requires_grad for p in copied.model.parameters())
    assert set(copied.roles) == {"reference"}
    precomputed = build_reference("precomputed", load=load, policy=policy)
    assert isinstance(precomputed, Precomputed) and precomputed.precomputed and len(loads) == 1
    simpo = build_reference("copy", load=load, policy=policy, used_in_training=False)
    assert type(simpo) is OnDemand and simpo.roles == {} and len(loads) == 1
    with simpo.scope() as network:  # loaded only for the block (the evaluator's KL)
        assert network is not policy and len(loads) == 2
    lora = wrap_lora(tiny_lm(), PeftConfig(enabled=True, r=4, alpha=8.0), TaskType.CAUSAL_LM)
    assert isinstance(build_reference("adapter", load=load, policy=lora), DisabledAdapter)


def test_an_adapter_reference_needs_a_peft_policy():
    with pytest.raises(ValueError, match="PEFT"):
        build_reference("adapter", load=tiny_lm, policy=tiny_lm())


def test_precompute_orders_by_index_and_restores_training_mode():
    model = tiny_lm()
    shuffled = [(i, TRAIN[i]) for i in (5, 2, 7, 0, 3, 6, 1, 4)]
    data = DataLoader(shuffled, batch_size=3, collate_fn=Collate())
    chosen, rejected = precompute_reference_logps(model, data)
    assert model.training
    for index in (0, 5, 7):
        logits = model.eval()(make_batch([TRAIN[index]], [index]).chosen_input_ids).logits
        batch = make_batch([TRAIN[index]], [index])
        labels = batch.chosen_labels[0, 1:]
        logps = torch.log_softmax(logits[0, :-1], -1)
        expected = sum(logps[t, labels[t]] for t in range(len(labels)) if labels[t] >= 0)
        assert chosen[index].item() == pytest.approx(expected.item(), abs=1e-5)
    assert chosen.shape == rejected.shape == (len(TRAIN),)
    with pytest.raises(ValueError, match="exactly once"):
        precompute_reference_logps(model, DataLoader(shuffled[:5], collate_fn=Collate()))
