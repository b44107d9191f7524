"""Runs the common evaluator at the end of every validation epoch, for every algorithm.

The recipe attaches an :class:`~leash.evaluation.evaluator.EvalContext` to the LightningModule
(``pl_module.eval_context``); this callback owns the sampling settings, so that every algorithm
is measured with the same ones. Metrics are logged under ``eval/``; the sampled responses of the
latest evaluation are written to ``eval_samples.jsonl`` in the run folder, and on the exact task
the optimal reward-KL curve from the reference to ``frontier.json`` (what reports draw).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import lightning

from leash.atomic import atomic_path, write_json_atomic
from leash.evaluation.evaluator import EvalSettings, PolicyEvaluator

log = logging.getLogger(__name__)


class PolicyEvaluation(lightning.Callback):
    """Evaluates ``pl_module.policy`` with the shared settings after each validation epoch."""

    def __init__(self, output_dir: str, table_rows: int = 16, **settings):
        self.output_dir = Path(output_dir)
        self.table_rows = table_rows
        self.settings = EvalSettings(**settings)
        self._evaluator: PolicyEvaluator | None = None
        self.last_samples: list = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        context = getattr(pl_module, "eval_context", None)
        if context is None:
            log.warning("no eval_context on %s: skipping evaluation", type(pl_module).__name__)
            return
        metrics = None
        if trainer.is_global_zero:  # sample once; the other processes receive the figures
            if self._evaluator is None or self._evaluator.context is not context:
                self._evaluator = PolicyEvaluator(context, self.settings)
            result = self._evaluator.evaluate(pl_module.policy)
            metrics = result.metrics
            self.last_samples = result.samples
            self._write_samples(trainer.global_step, result.samples)
            if result.frontier is not None:
                self._write_frontier(result.frontier)
        metrics = trainer.strategy.broadcast(metrics, src=0)
        # Every process logs the same numbers, so the cross-process mean is exact.
        pl_module.log_dict(metrics, sync_dist=True)

    def _write_frontier(self, curve) -> None:
        payload = {
            "beta": [None if b == float("inf") else float(b) for b in curve.betas],
            "kl": [float(v) for v in curve.kl],
            "reward": [float(v) for v in curve.reward],
        }
        write_json_atomic(self.output_dir / "frontier.json", payload)

    def _write_samples(self, step: int, samples: list) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_dir / "eval_samples.jsonl") as tmp, tmp.open("w") as handle:
            for row in samples[: self.table_rows]:
                handle.write(json.dumps({"step": step, **asdict(row)}) + "\n")
