"""The run's progress bar label, and the console's filter of third-party noise."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from leash.callbacks.progress import RunProgressBar
from leash.cli import _calm_console


def label(max_epochs: int | None, max_steps: int, epoch: int) -> str:
    bar = RunProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs, max_steps=max_steps)
    return bar._get_train_description(epoch).strip()


def test_a_run_bounded_by_steps_names_its_budget_not_epoch_minus_two():
    assert label(-1, 80, 4) == "Epoch 4 (run: 80 steps)"
    assert label(None, 200, 0) == "Epoch 0 (run: 200 steps)"
    assert label(3, -1, 1) == "Epoch 1/2"


def test_the_bar_is_one_line_reset_every_epoch():
    assert RunProgressBar()._leave is False


def test_the_console_prints_each_line_once_without_lightnings_tips(caplog):
    import lightning  # noqa: F401  (attaches Lightning's own console handlers)

    root = logging.getLogger()
    _calm_console()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO):
        rank_zero.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        rank_zero.info("`weights_only` was not set, defaulting to `False`.")
        rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    for handler in root.handlers:
        handler.filters = [f for f in handler.filters if type(f).__name__ != "_DropNoise"]


def test_the_progress_file_says_step_budget_rate_and_headline_metric(tmp_path, monkeypatch):
    import json

    import torch

    from leash.callbacks import progress
    from leash.callbacks.progress import ProgressFile

    clock = iter([10.0, 10.2, 12.0, 13.0])  # first step's end, too soon to rewrite, then two
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    trainer = SimpleNamespace(global_step=1, max_steps=9, is_global_zero=True,
                              callback_metrics={"train/loss": torch.tensor(0.5)})
    callback = ProgressFile(str(tmp_path), every_s=0.5)
    written = []
    for step in (1, 2, 3):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, None)
        written.append(json.loads((tmp_path / "progress.json").read_text()))
    assert written[0] == {"step": 1, "max_steps": 9, "timed_from_step": 1, "elapsed_s": 0.0,
                          "metric": "train/loss", "value": 0.5, "finished": False}
    assert written[1]["step"] == 1  # 0.2 s later: not rewritten
    assert written[2]["step"] == 3 and written[2]["elapsed_s"] == 2.0
    trainer.callback_metrics["train/objective/rlhf_reward"] = torch.tensor(float("nan"))
    callback.on_train_end(trainer, None)
    last = json.loads((tmp_path / "progress.json").read_text())
    assert last["finished"] and last["metric"] == "train/objective/rlhf_reward"
    assert last["value"] is None  # a non-finite value is no number to print


def test_only_the_main_process_writes_the_progress_file(tmp_path):
    from leash.callbacks.progress import ProgressFile

    trainer = SimpleNamespace(global_step=1, max_steps=9, is_global_zero=False,
                              callback_metrics={})
    ProgressFile(str(tmp_path)).on_train_batch_end(trainer, None)
    assert not (tmp_path / "progress.json").exists()
