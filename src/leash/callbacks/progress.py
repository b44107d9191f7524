"""The console's progress bar: one live line for the run, labelled by epoch and step budget.

Lightning's RichProgressBar labels its bar ``Epoch 3/-2`` when a run is bounded by steps
(``max_epochs=-1``, as every leash run is), and with ``leave=True`` prints a new line per
epoch: sixty lines for a default PPO run, whose epochs are one batch each. This bar is reset
in place every epoch and names the run's step budget.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar


class RunProgressBar(RichProgressBar):
    """RichProgressBar labelled ``Epoch N (run: M steps)`` (``Epoch N/E`` when the run is
    bounded by epochs), one line reset in place every epoch."""

    def __init__(self, **kwargs) -> None:
        super().__init__(leave=False, **kwargs)

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            label = f"Epoch {current_epoch}/{trainer.max_epochs - 1}"
        else:
            label = f"Epoch {current_epoch} (run: {trainer.max_steps} steps)"
        return f"{label:{len(self.validation_description)}}"
