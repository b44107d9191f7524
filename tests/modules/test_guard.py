"""The guard every module shares: non-finite values stop the run naming step and quantity (on
every process at once), the divergence rule on hand-made loss histories, and the validation
every run gets at its end."""

from __future__ import annotations

import math

import lightning
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from helpers import quiet_trainer, tiny_model
from leash.config import Scheduler, SFTConfig
from leash.data.types import SFTBatch
from leash.modules.guard import (
    TREND_WINDOW,
    LossHistory,
    NonFiniteError,
    check_finite,
    diverged,
    raise_if_non_finite,
)
from leash.modules.sft import SFTModule
from leash.sequences import IGNORE_INDEX

LN2 = math.log(2)
VOCAB = 12


def identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


# ------------------------------------------------------------------------------- the check
def test_finite_quantities_pass_and_a_nan_or_inf_is_named():
    check_finite("sft step 3", identity, loss=torch.tensor(0.5), grads=torch.ones(4))
    with pytest.raises(NonFiniteError, match=r"^sft step 3: non-finite loss, grad_norm; stopped"):
        check_finite("sft step 3", identity, loss=torch.tensor(float("nan")),
                     ok=torch.tensor(1.0), grad_norm=torch.tensor([1.0, float("inf")]))


def test_every_process_raises_when_another_one_holds_the_nan():
    # Another process's flags arrive through the sum: this one's are clean, the total is 1.
    def other_process_has_one(tensor: torch.Tensor) -> torch.Tensor:
        return tensor + 1

    flags = {"train/loss": torch.tensor(False), "grad_norm": torch.tensor(False)}
    with pytest.raises(NonFiniteError, match="non-finite values on another process"):
        raise_if_non_finite("dpo step 7", flags, other_process_has_one)
    raise_if_non_finite("dpo step 7", flags, identity)  # alone, nothing is wrong
    raise_if_non_finite("dpo step 7", {}, other_process_has_one)  # nothing watched: no sync


# ------------------------------------------------------------------------- divergence rule
def test_the_divergence_rule_by_hand():
    # start + max(|start|, 1): a DPO start of ln 2 is flagged above 1.693 ...
    assert not diverged(LN2, LN2 + 0.99) and diverged(LN2, LN2 + 1.01)
    # ... an SFT start of 3 above 6 (double), a negative start one above itself.
    assert not diverged(3.0, 5.9) and diverged(3.0, 6.1)
    assert not diverged(-0.5, 0.4) and diverged(-0.5, 0.6)
    assert not diverged(LN2, 0.1)  # a falling loss never is


def trend_of(losses: list[float]):
    history = LossHistory()
    for loss in losses:
        history.add(torch.tensor(loss))
    return history.trend(identity)


def test_trend_is_the_median_of_the_first_and_last_window():
    assert TREND_WINDOW == 5
    # First five: 0.69 0.70 0.68 9.0 0.69 -> median 0.69 (one spike does not move it).
    # Last five: 0.30 0.20 0.25 0.40 0.35 -> median 0.30.
    losses = [0.69, 0.70, 0.68, 9.0, 0.69, 0.5, 0.4, 0.30, 0.20, 0.25, 0.40, 0.35]
    trend = trend_of(losses)
    assert trend.loss_start == pytest.approx(0.69) and trend.loss_end == pytest.approx(0.30)
    assert trend.steps == 12 and not trend.diverged
    assert "not diverged" in trend.describe()


def test_a_loss_that_explodes_is_flagged_and_says_so():
    losses = [LN2] * 5 + [3.0, 50.0, 5e3, 5e5, 5.7e6, 5.8e6, 5.9e6]
    trend = trend_of(losses)  # last five: 5e3 5e5 5.7e6 5.8e6 5.9e6 -> median 5.7e6
    assert trend.loss_start == pytest.approx(LN2) and trend.loss_end == pytest.approx(5.7e6)
    assert trend.diverged
    assert trend.describe().startswith("DIVERGED: train/loss 0.6931 -> 5.7e+06")


def test_a_short_run_compares_overlapping_windows_and_an_empty_one_has_no_trend():
    trend = trend_of([LN2, 2.0, 3.0])  # both windows are the three losses: start == end
    assert trend.loss_start == trend.loss_end == pytest.approx(2.0) and not trend.diverged
    assert LossHistory().trend(identity) is None


# ------------------------------------------------------------------------------ in training
def sft_batch(rows: int = 4, length: int = 6) -> SFTBatch:
    torch.manual_seed(0)
    ids = torch.randint(1, VOCAB, (rows, length))
    labels = ids.clone()
    labels[:, :2] = IGNORE_INDEX
    return SFTBatch(ids, torch.ones_like(ids), labels)


def sft_module(max_steps: int = 4) -> SFTModule:
    algo = SFTConfig(lr=1e-2, scheduler=Scheduler.constant, warmup_steps=0, max_steps=max_steps)
    return SFTModule(tiny_model(VOCAB).train(), algo)


def loader(batches: int = 8) -> DataLoader:
    return DataLoader([sft_batch()] * batches, batch_size=None)


def test_a_nan_loss_stops_sft_naming_the_step_before_any_update():
    module = sft_module()
    with torch.no_grad():
        module.policy.lm_head.weight[0, 0] = float("nan")
    before = module.policy.transformer.wte.weight.detach().clone()
    with pytest.raises(NonFiniteError, match=r"^sft step 0: non-finite train/loss, grad_norm;"):
        quiet_trainer(max_steps=4).fit(module, loader())
    # The NaN gradient was never applied (GPT-2 ties lm_head to wte: the NaN entry stays).
    assert torch.equal(module.policy.transformer.wte.weight.isnan(), before.isnan())


class InfGradientFrom(lightning.Callback):
    """Turns the gradient of one weight into inf from optimizer step ``step`` on."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_after_backward(self, trainer, module) -> None:
        if trainer.global_step >= self.step:
            module.policy.transformer.h[0].mlp.c_fc.weight.grad[0, 0] = float("inf")


def test_an_inf_gradient_stops_the_run_and_the_last_checkpoint_is_the_last_good_step(tmp_path):
    module = sft_module(max_steps=6)
    saver = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    trainer = quiet_trainer(max_steps=6, enable_checkpointing=True,
                            callbacks=[saver, InfGradientFrom(step=3)])
    with pytest.raises(NonFiniteError, match=r"^sft step 3: non-finite grad_norm;"):
        trainer.fit(module, loader())
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 3
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())


class CountValidations(lightning.Callback):
    def __init__(self) -> None:
        self.at_steps: list[int] = []

    def on_validation_end(self, trainer, module) -> None:
        self.at_steps.append(trainer.global_step)


@pytest.mark.parametrize(("max_steps", "interval", "expected"),
                         [(3, 100, [3]), (4, 2, [2, 4]), (5, 2, [2, 4, 5])])
def test_every_run_is_validated_once_at_its_end(max_steps, interval, expected):
    counter = CountValidations()
    module = sft_module(max_steps=max_steps)
    quiet_trainer(max_steps=max_steps, val_check_interval=interval, check_val_every_n_epoch=None,
                  limit_val_batches=1, callbacks=[counter]).fit(module, loader(), loader(1))
    assert counter.at_steps == expected
    assert module.loss_trend is not None and module.loss_trend.steps == max_steps


# ------------------------------------------------------------------- logging and clipping
class LoggedSteps(SFTModule):
    """Records the step of every ``train/loss`` it logs and the loss of every step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.logged_at: list[int] = []
        self.losses: list[float] = []

    def log(self, name, value, *args, **kwargs) -> None:
        if name == "train/loss":
            self.logged_at.append(self.global_step + 1)
        super().log(name, value, *args, **kwargs)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.losses.append(loss.item())
        return loss


def test_training_metrics_are_logged_only_when_lightning_writes_them():
    algo = SFTConfig(lr=1e-2, scheduler=Scheduler.constant, warmup_steps=0, max_steps=7)
    module = LoggedSteps(tiny_model(VOCAB).train(), algo)
    trainer = quiet_trainer(max_steps=7, log_every_n_steps=3)
    trainer.fit(module, loader(batches=20))
    assert module.logged_at == [3, 6, 7]  # every third optimizer step, and the last one
    assert trainer.callback_metrics["train/loss"].item() == pytest.approx(module.losses[-1])
    assert module.loss_trend.steps == 7  # every step is still watched


class LightningClipping(SFTModule):
    """Lightning's own gradient clipping (a second norm), for comparison."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None):
        lightning.LightningModule.configure_gradient_clipping(
            self, optimizer, gradient_clip_val, gradient_clip_algorithm)


def test_clipping_with_the_guard_norm_updates_exactly_as_lightning(monkeypatch):
    second_norms = []  # Lightning clips with clip_grad_norm_, which computes the norm again
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda *a, **k: second_norms.append(1) or clip(*a, **k))
    weights, counts = [], []
    for module in (sft_module(), LightningClipping(tiny_model(VOCAB).train(),
                                                   sft_module().algo)):
        quiet_trainer(max_steps=4, gradient_clip_val=1e-3).fit(module, loader())
        weights.append({n: p.detach().clone() for n, p in module.policy.named_parameters()})
        counts.append(len(second_norms))
    assert counts == [0, 4]  # the guard's clipping computes no second norm
    for name, weight in weights[1].items():
        assert torch.equal(weights[0][name], weight), name
    assert not torch.equal(weights[0]["transformer.wte.weight"],
                           tiny_model(VOCAB).transformer.wte.weight)
