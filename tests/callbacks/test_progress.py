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
