"""OnlineDPOModule: the loss on sampled pairs is ``preference_loss`` on the same tensors, an
online step trains the policy (and only it), iterative rounds sample once per round and move
the reference only with ``reference_update=last_round``, the online schedule is the iterative
one at one step per round, ties and NaN scores, and a run resumed mid-round ends bit-identical.

Models are a tiny GPT-2 written with ``write_tiny_checkpoint`` on the synthetic task's tokenizer;
prompt batches are the task's 12 train prompts, left padded (the ``prompts`` view).
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning
import pytest
import torch
from torch.utils.data import DataLoader

from heldout import direct_implicit_rm, heldout_pair_loader
from helpers import quiet_trainer
from leash.callbacks.resume import ResumeCheckpoint
from leash.config import (
    DPOLoss,
    ModelConfig,
    OnlineDPOConfig,
    OnlineSchedule,
    ReferenceUpdate,
    Scheduler,
    TaskConfig,
    TinyModelConfig,
)
from leash.data.collate import PromptCollator
from leash.data.encoding import EncodedPrompt
from leash.data.tasks.synthetic import SyntheticTask
from leash.data.types import PromptBatch
from leash.losses.preference import preference_loss
from leash.models.factory import load_causal_lm
from leash.models.logprobs import response_token_logps
from leash.models.reference import FrozenCopy
from leash.modules.guard import NonFiniteError
from leash.modules.online_dpo import OnlineDPOModule
from leash.rollout.pairs import label_pairs, pair_batch
from leash.rollout.rewards import GoldTaskReward
from leash.rollout.rollout import sample

DPO_METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
               "rewards/margins", "logps/chosen", "logps/rejected"]
ONLINE_METRICS = ["objective/scores", "pairs/ties", "pairs/tie_fraction", "pairs/trained",
                  "round"]


@pytest.fixture(scope="module")
def task() -> SyntheticTask:
    return SyntheticTask.from_config(TaskConfig(num_prompts=16))


@pytest.fixture(scope="module")
def checkpoint(task: SyntheticTask, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from leash.models.tiny import write_tiny_checkpoint

    tiny = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2)
    return write_tiny_checkpoint(tiny, task.tokenizer(), tmp_path_factory.mktemp("tiny") / "base")


def all_prompts(task: SyntheticTask) -> PromptBatch:
    tokenizer = task.tokenizer()
    encoded = [EncodedPrompt(i, p, tokenizer(p)["input_ids"])
               for i, p in enumerate(task.train_prompts)]
    return PromptCollator(tokenizer.pad_token_id)(encoded)


def prompt_loader(task: SyntheticTask, batch_size: int = 12) -> DataLoader:
    """The train prompts in order; 12 of them: one batch per epoch by default."""
    tokenizer = task.tokenizer()
    encoded = [EncodedPrompt(i, p, tokenizer(p)["input_ids"])
               for i, p in enumerate(task.train_prompts)]
    return DataLoader(encoded, batch_size=batch_size,
                      collate_fn=PromptCollator(tokenizer.pad_token_id))


def make_algo(**overrides) -> OnlineDPOConfig:
    settings = dict(reward="gold", lr=1e-2, beta=0.5, scheduler=Scheduler.constant, max_steps=2)
    return OnlineDPOConfig(**{**settings, **overrides})


def iterative(rounds: int = 3, steps_per_round: int = 2, **overrides) -> OnlineDPOConfig:
    settings = dict(schedule=OnlineSchedule.iterative, rounds=rounds,
                    steps_per_round=steps_per_round, max_steps=rounds * steps_per_round,
                    sample_batch_size=8)
    return make_algo(**{**settings, **overrides})


def make_module(task, checkpoint, algo: OnlineDPOConfig, reward_fn=None) -> OnlineDPOModule:
    tokenizer = task.tokenizer()

    def load(trainable: bool) -> torch.nn.Module:
        return load_causal_lm(str(checkpoint), ModelConfig(), tokenizer, trainable=trainable)

    return OnlineDPOModule(
        load(True), FrozenCopy(load(False)), reward_fn or GoldTaskReward(task), algo,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        max_new_tokens=task.config.max_response_length, allowed_token_ids=task.allowed_token_ids(),
        round_prompts=all_prompts(task) if algo.schedule == OnlineSchedule.iterative else None,
    )


def fit(module, loader, callbacks=(), seed: int = 0, **trainer_args) -> lightning.Trainer:
    torch.manual_seed(seed)
    trainer = quiet_trainer(max_steps=module.algo.max_steps, callbacks=list(callbacks),
                            **trainer_args)
    trainer.fit(module, train_dataloaders=loader)
    return trainer


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class CountingReward(GoldTaskReward):
    """The gold reward, counting its calls (one per generation chunk)."""

    calls = 0

    def __call__(self, *inputs):
        self.calls += 1
        return super().__call__(*inputs)


# ------------------------------------------------------------------------------------ the loss
@pytest.mark.parametrize(
    ("loss", "smoothing"),
    [(DPOLoss.sigmoid, 0.0), (DPOLoss.sigmoid, 0.2), (DPOLoss.robust, 0.1), (DPOLoss.ipo, 0.0),
     (DPOLoss.hinge, 0.0), (DPOLoss.simpo, 0.0)],
)
def test_loss_on_sampled_pairs_is_preference_loss_of_the_rollout_log_probs(
    task, checkpoint, loss, smoothing
):
    algo = make_algo(loss=loss, label_smoothing=smoothing)
    module = make_module(task, checkpoint, algo)
    with torch.no_grad():  # move the policy off the reference, so the rewards are not all 0
        for p in module.policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts, tokenizer, allowed = all_prompts(task), task.tokenizer(), task.allowed_token_ids()
    torch.manual_seed(0)
    responses = sample(module.policy, prompts.input_ids, prompts.attention_mask,
                       samples_per_prompt=2, max_new_tokens=task.config.max_response_length,
                       temperature=1.0, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, allowed_token_ids=allowed)
    labels = label_pairs(GoldTaskReward(task)(*responses.model_inputs()))
    assert len(labels.chosen) > 4
    step = module.compute(pair_batch(responses, labels, prompts.index, tokenizer.pad_token_id))

    # The same pairs read in the rollout layout (left-padded prompt, right-padded response).
    def summed(model, rows):
        return response_token_logps(model, *responses.rows(rows).model_inputs(), allowed).sum(1)

    lengths = responses.response_mask.sum(1)
    expected = preference_loss(
        loss.value,
        summed(module.policy, labels.chosen), summed(module.policy, labels.rejected),
        summed(module.reference.model, labels.chosen),
        summed(module.reference.model, labels.rejected),
        beta=algo.beta, label_smoothing=smoothing, simpo_gamma=algo.simpo_gamma,
        chosen_lengths=lengths[labels.chosen], rejected_lengths=lengths[labels.rejected],
    )
    torch.testing.assert_close(step.losses, expected.losses, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step.chosen_rewards, expected.chosen_rewards, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step.rejected_rewards, expected.rejected_rewards,
                               atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------- online
class FirstLoss(lightning.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_an_online_step_samples_its_batch_and_trains_the_policy_only(task, checkpoint):
    module = make_module(task, checkpoint, make_algo())
    policy, reference = weights(module.policy), weights(module.reference.model)
    losses = FirstLoss()
    trainer = fit(module, prompt_loader(task), callbacks=[losses])
    assert trainer.global_step == 2
    assert losses.losses[0] == pytest.approx(math.log(2), abs=1e-6)  # step 0: policy == ref
    after = dict(module.policy.named_parameters())
    unchanged = [n for n, p in module.policy.named_parameters() if torch.equal(p, policy[n])]
    assert not unchanged and after
    assert same(weights(module.reference.model), reference)
    metrics = trainer.callback_metrics
    for name in [f"train/{m}" for m in DPO_METRICS + ONLINE_METRICS] + ["time/generation_s"]:
        assert name in metrics and torch.isfinite(metrics[name]), name
    # 12 prompts: every one gives a pair or a tie.
    assert metrics["train/pairs/trained"] + metrics["train/pairs/ties"] == 12
    assert metrics["train/pairs/tie_fraction"] == pytest.approx(metrics["train/pairs/ties"] / 12)
    assert metrics["train/round"] == 1
    assert module.step_tokens[1] == int(metrics["train/pairs/trained"])


@pytest.mark.parametrize("schedule", [OnlineSchedule.online, OnlineSchedule.iterative])
def test_validation_is_dpos_on_the_heldout_pairs(task, checkpoint, schedule):
    # The implicit reward model beta · log pi/pi_ref, the reference (the SFT policy) loaded here
    # afresh from disk; validation (at the end of the run) reads the trained policy.
    algo = iterative(rounds=2) if schedule == OnlineSchedule.iterative else make_algo()
    module = make_module(task, checkpoint, algo)
    pairs = heldout_pair_loader(task)
    torch.manual_seed(0)
    trainer = quiet_trainer(max_steps=algo.max_steps)
    trainer.fit(module, train_dataloaders=prompt_loader(task), val_dataloaders=pairs)
    reference = load_causal_lm(str(checkpoint), ModelConfig(), task.tokenizer(), trainable=False)
    expected = direct_implicit_rm(module.policy, reference, pairs, algo.beta,
                                  task.allowed_token_ids())
    metrics = trainer.callback_metrics
    for name, value in expected.items():
        assert metrics[name].item() == pytest.approx(value, abs=1e-5), name
    assert all(f"val/{name}" in metrics for name in DPO_METRICS)
    accuracy = expected["eval/implicit_rm_accuracy"]  # the batch-size-weighted epoch mean
    assert metrics["val/rewards/accuracies"].item() == pytest.approx(accuracy, abs=1e-6)


def test_a_step_whose_pairs_all_tie_trains_nothing(task, checkpoint):
    constant = lambda *inputs: torch.zeros(len(inputs[0]))  # noqa: E731
    algo = make_algo(max_steps=1, missing_eos_penalty=None)
    module = make_module(task, checkpoint, algo, reward_fn=constant)
    before = weights(module.policy)
    trainer = fit(module, prompt_loader(task))
    assert trainer.global_step == 1
    assert trainer.callback_metrics["train/pairs/tie_fraction"] == 1.0
    assert trainer.callback_metrics["train/pairs/trained"] == 0
    assert "train/loss" not in trainer.callback_metrics
    assert same(weights(module.policy), before)  # zero gradients at AdamW's first step


def test_a_response_cut_without_eos_loses_to_one_that_ended_at_equal_score(task, checkpoint):
    eos, ended = task.tokenizer().eos_token_id, []

    def constant(prompt_ids, prompt_mask, response_ids, response_mask):
        ended.append(((response_ids == eos) & (response_mask > 0)).any(dim=1))
        return torch.zeros(len(response_ids))

    algo = make_algo(max_steps=1, missing_eos_penalty=1.0)
    trainer = fit(make_module(task, checkpoint, algo, reward_fn=constant), prompt_loader(task))
    (rows,) = ended
    both_alike = int((rows[0::2] == rows[1::2]).sum())  # the two samples of a prompt, adjacent
    metrics = trainer.callback_metrics
    # Equal scores, so a pair exists exactly where one response ended and the other was cut.
    assert metrics["train/pairs/ties"] == both_alike < len(rows) // 2
    assert metrics["train/pairs/trained"] == len(rows) // 2 - both_alike


def test_a_nan_score_stops_the_run_naming_the_step(task, checkpoint):
    nan = lambda *inputs: torch.full((len(inputs[0]),), float("nan"))  # noqa: E731
    module = make_module(task, checkpoint, make_algo(), reward_fn=nan)
    with pytest.raises(NonFiniteError, match=r"online_dpo step 0 \(sampled pairs\).*scores"):
        fit(module, prompt_loader(task))


# ---------------------------------------------------------------------------------- iterative
class ReferenceWatch(lightning.Callback):
    """Per step: the policy before it, the reference before and after it."""

    def __init__(self):
        self.steps: list[tuple[dict, dict, dict]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._before = weights(module.policy), weights(module.reference.model)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps.append((*self._before, weights(module.reference.model)))


@pytest.mark.parametrize("update", [ReferenceUpdate.fixed, ReferenceUpdate.last_round])
def test_rounds_sample_once_and_only_last_round_moves_the_reference(task, checkpoint, update):
    reward = CountingReward(task)
    module = make_module(task, checkpoint, iterative(reference_update=update), reward)
    sft = weights(module.reference.model)
    watch = ReferenceWatch()
    # Batches of 4 of the 12 prompts: each step trains the pairs of its own 4 prompts.
    trainer = fit(module, prompt_loader(task, batch_size=4), callbacks=[watch])
    assert trainer.global_step == 6
    assert reward.calls == 3 * 2  # 3 rounds x 2 generation chunks (8 + 4 prompts), no more
    assert trainer.callback_metrics["train/round"] == 2
    for step, (policy_before, ref_before, ref_after) in enumerate(watch.steps):
        moved = update == ReferenceUpdate.last_round and step in (2, 4)  # rounds 1 and 2 start
        assert same(ref_after, ref_before) != moved, step
        if moved:  # the reference became the policy the round started from
            assert same(ref_after, policy_before)
            assert not same(ref_after, sft)
    if update == ReferenceUpdate.fixed:
        assert same(weights(module.reference.model), sft)


def test_the_online_schedule_is_the_iterative_one_at_one_step_per_round(task, checkpoint):
    online = make_module(task, checkpoint, make_algo(max_steps=3))
    fit(online, prompt_loader(task))
    # One batch holds every prompt, and one generation call samples them all, in order.
    rounds = make_module(task, checkpoint, iterative(3, 1, sample_batch_size=12))
    fit(rounds, prompt_loader(task))
    assert same(weights(online.policy), weights(rounds.policy))


# ------------------------------------------------------------------------------------- resume
class Killed(RuntimeError):
    pass


class KillAt(lightning.Callback):
    """Fail at the start of a step, after ResumeCheckpoint has saved there (a killed run)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Killed(f"step {self.step}")


def test_a_run_resumed_mid_round_ends_as_the_uninterrupted_run(task, checkpoint, tmp_path):
    algo = iterative(reference_update=ReferenceUpdate.last_round)
    full = make_module(task, checkpoint, algo)
    fit(full, prompt_loader(task), callbacks=[ResumeCheckpoint(str(tmp_path / "full"), 1)],
        default_root_dir=tmp_path)

    killed = tmp_path / "killed"
    first = make_module(task, checkpoint, algo)
    with pytest.raises(Killed):  # ResumeCheckpoint saves on no exception: step 3's save stays
        fit(first, prompt_loader(task), callbacks=[ResumeCheckpoint(str(killed), 1), KillAt(3)],
            default_root_dir=tmp_path)
    last = killed / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["online_dpo_round"]["round"] == 1  # mid-round

    resumed = make_module(task, checkpoint, algo)
    torch.manual_seed(123)  # whatever the RNG now holds, the checkpoint's states win
    trainer = quiet_trainer(max_steps=algo.max_steps, default_root_dir=tmp_path,
                            callbacks=[ResumeCheckpoint(str(killed), 1)])
    trainer.fit(resumed, train_dataloaders=prompt_loader(task), ckpt_path=str(last))
    assert trainer.global_step == algo.max_steps
    assert same(weights(resumed.policy), weights(full.policy))
    assert same(weights(resumed.reference.model), weights(full.reference.model))
