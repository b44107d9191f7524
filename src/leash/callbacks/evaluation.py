"""Writes each evaluation of the policy into the run folder, for reports and people to read.

After every validation, the module's latest :class:`~leash.evaluation.evaluator.Evaluation`
(see :mod:`leash.modules.evaluated`) is written: its sampled responses to
``eval_samples.jsonl`` and, on the exact task, the optimal reward-KL curve from the reference to
``frontier.json`` (what ``leash report`` draws). Both files are written atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import lightning

from leash.atomic import atomic_path, write_json_atomic
from leash.evaluation.evaluator import Evaluation
from leash.evaluation.oracle import Frontier


def frontier_payload(curve: Frontier) -> dict[str, list]:
    """The curve as JSON lists (β = ∞, the reference itself, written as null)."""
    return {
        "beta": [None if b == float("inf") else float(b) for b in curve.betas],
        "kl": [float(v) for v in curve.kl],
        "reward": [float(v) for v in curve.reward],
    }


class EvaluationFiles(lightning.Callback):
    """Writes ``eval_samples.jsonl`` and ``frontier.json`` after each new evaluation."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self._written: Evaluation | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        evaluation = getattr(pl_module, "last_evaluation", None)
        if not trainer.is_global_zero or evaluation is None or evaluation is self._written:
            return
        self._written = evaluation
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_dir / "eval_samples.jsonl") as tmp, tmp.open("w") as handle:
            for row in evaluation.samples:
                handle.write(json.dumps({"step": trainer.global_step, **asdict(row)}) + "\n")
        if evaluation.frontier is not None:
            payload = frontier_payload(evaluation.frontier)
            write_json_atomic(self.output_dir / "frontier.json", payload)
