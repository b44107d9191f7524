"""Logs each evaluation's samples table and reward-KL figure to W&B (no-op without W&B).

After every new evaluation of the module's policy (its ``last_evaluation``, see
:mod:`leash.modules.evaluated`) this callback logs, through the Trainer's WandbLogger:
- ``eval/samples``: a ``wandb.Table`` of the sampled responses (prompt, response, gold_reward,
  rm_score, judge_score, length, log_ratio, step), the evaluation's ``eval.table_rows`` rows;
- ``eval/frontier`` (exact task only): a ``wandb.Image`` of the evaluation's optimal reward-KL
  curve with this run's (``eval/exact_kl``, ``eval/exact_gold_reward``) points so far.
"""

from __future__ import annotations

import lightning
import numpy as np
from lightning.pytorch.loggers import WandbLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leash.evaluation.evaluator import Evaluation
from leash.evaluation.oracle import Frontier

SAMPLE_COLUMNS = ["prompt", "response", "gold_reward", "rm_score", "judge_score", "length",
                  "log_ratio", "step"]
POINT_METRICS = ("eval/exact_kl", "eval/exact_gold_reward")


def frontier_figure(frontier: Frontier, points: list[tuple[int, float, float]]) -> np.ndarray:
    """RGBA pixels of the optimal reward-KL curve with the run's ``(step, kl, reward)`` points,
    the latest one highlighted."""
    figure = Figure(figsize=(5, 4), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(frontier.kl, frontier.reward, color="black", label="optimal (π*_β)")
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
    """Sends the latest evaluation's samples and the frontier figure to W&B."""

    def __init__(self) -> None:
        self._logged: Evaluation | None = None
        self._points: list[tuple[int, float, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        # After the module's on_validation_epoch_end, so the evaluation has run.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        evaluation = getattr(pl_module, "last_evaluation", None)
        if logger is None or evaluation is None or evaluation is self._logged:
            return  # no W&B, nothing evaluated, or nothing new since the last call
        self._logged = evaluation
        import wandb

        step = trainer.global_step
        rows = [
            [*(getattr(row, name) for name in SAMPLE_COLUMNS[:-1]), step]
            for row in evaluation.samples
        ]
        media = {"eval/samples": wandb.Table(columns=SAMPLE_COLUMNS, data=rows)}
        if evaluation.frontier is not None and all(n in evaluation.metrics for n in POINT_METRICS):
            kl, reward = (evaluation.metrics[name] for name in POINT_METRICS)
            self._points.append((step, kl, reward))
            pixels = frontier_figure(evaluation.frontier, self._points)
            media["eval/frontier"] = wandb.Image(pixels, caption=f"step {step}")
        logger.log_metrics(media, step=step)
