"""Logs each evaluation's samples table and reward-KL figure to W&B (no-op without W&B).

After every evaluation of :class:`~leash.callbacks.evaluation.PolicyEvaluation` this callback
logs, through the Trainer's WandbLogger:
- ``eval/samples``: a ``wandb.Table`` of the sampled responses (prompt, response, gold_reward,
  rm_score, log_ratio, step), as many rows as the evaluator's ``table_rows``;
- ``eval/frontier`` (exact task only): a ``wandb.Image`` of the optimal reward-KL curve of
  ``frontier.json`` with this run's (``eval/exact_kl``, ``eval/exact_gold_reward``) points so far.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning
import numpy as np
from lightning.pytorch.loggers import WandbLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leash.callbacks.evaluation import PolicyEvaluation

SAMPLE_COLUMNS = ["prompt", "response", "gold_reward", "rm_score", "log_ratio", "step"]
POINT_METRICS = ("eval/exact_kl", "eval/exact_gold_reward")


def frontier_figure(frontier: dict, points: list[tuple[int, float, float]]) -> np.ndarray:
    """RGBA pixels of the optimal reward-KL curve with the run's ``(step, kl, reward)`` points,
    the latest one highlighted."""
    figure = Figure(figsize=(5, 4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(frontier["kl"], frontier["reward"], color="black", label="optimal (π*_β)")
    steps, kls, rewards = zip(*points, strict=True)
    axes.plot(kls, rewards, marker="o", color="tab:blue", alpha=0.5, label="this run")
    axes.scatter(kls[-1:], rewards[-1:], s=120, marker="*", color="tab:red", zorder=3,
                 label=f"step {steps[-1]}")
    axes.set_xlabel("KL(π ‖ π_ref), exact (nats)")
    axes.set_ylabel("expected gold reward, exact")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


class WandbEvalMedia(lightning.Callback):
    """Sends the evaluator's samples and the frontier figure to W&B after each evaluation."""

    def __init__(self) -> None:
        self._logged: list | None = None
        self._points: list[tuple[int, float, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        # After every callback's on_validation_epoch_end, so the evaluation has run.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        evaluation = next((c for c in trainer.callbacks if isinstance(c, PolicyEvaluation)), None)
        if logger is None or evaluation is None or not evaluation.last_samples:
            return  # no W&B, no evaluator, or nothing evaluated (no eval_context)
        if evaluation.last_samples is self._logged:
            return  # no new evaluation since the last call
        self._logged = evaluation.last_samples
        import wandb

        step = trainer.global_step
        rows = [
            [row.prompt, row.response, row.gold_reward, row.rm_score, row.log_ratio, step]
            for row in evaluation.last_samples[: evaluation.table_rows]
        ]
        media = {"eval/samples": wandb.Table(columns=SAMPLE_COLUMNS, data=rows)}
        metrics = trainer.callback_metrics
        frontier_file = Path(evaluation.output_dir) / "frontier.json"
        if all(name in metrics for name in POINT_METRICS) and frontier_file.exists():
            kl, reward = (float(metrics[name]) for name in POINT_METRICS)
            self._points.append((step, kl, reward))
            pixels = frontier_figure(json.loads(frontier_file.read_text()), self._points)
            media["eval/frontier"] = wandb.Image(pixels, caption=f"step {step}")
        logger.log_metrics(media, step=step)
