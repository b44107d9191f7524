"""The support matrix: which algorithm x strategy x precision combinations leash runs.

The one place that knows strategy names (DESIGN.md): :func:`check_support` classifies the
composed ``trainer`` block into a column of the matrix and rejects, before anything loads, a
combination that cannot run, saying why and which supported strategy to use instead;
:func:`render_matrix` writes the same data as the README's table. A strategy outside the matrix
(XLA, or a `_target_` of another class) and a precision outside it (fp16, fp64) are not checked.

What the rules rest on (Lightning 2.6, read in its source and issues):

- Manual optimisation (the PPO-style loops: one training step is a rollout and several optimizer
  steps) does not run under Lightning's FSDP strategy (Lightning issues #19685, #20138). Its
  DeepSpeed strategy runs it (its precision plugin steps the engine from ``optimizer.step()``)
  but takes exactly one optimizer: PPO's policy and critic are two parameter groups of one AdamW.
- Lightning's FSDP precision plugin cannot clip gradients by norm (issue #19235), and FSDP, like
  ZeRO-3, holds a shard of each weight outside the training step; leash's evaluator (first
  process, after validation) and its final Hugging Face save read the whole policy there, and
  ZeRO-3 gathers weights inside every forward, so the processes' sampling loops (which stop
  when their own responses end) would wait on each other.
- DeepSpeed and FSDP need CUDA GPUs (Lightning's strategies refuse any other accelerator).
- DeepSpeed clips inside its step, from its `gradient_clipping` setting, and Lightning's
  ``clip_gradients`` does nothing there: conf/trainer/deepspeed_*.yaml set it from
  ``algo.max_grad_norm`` (:func:`deepspeed_clip`), so manual optimisation is clipped as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leash.config.algo import (
    ALGO_SCHEMAS,
    DPOConfig,
    OnlineDPOConfig,
    PPOConfig,
    RewardConfig,
    SFTConfig,
)

FAMILIES = {SFTConfig: "sft", RewardConfig: "reward", DPOConfig: "dpo",
            OnlineDPOConfig: "online_dpo", PPOConfig: "ppo"}  # fmt: skip
"""Rows of the matrix: every algorithm of one schema trains the same way."""


@dataclass(frozen=True)
class Strategy:
    """A column of the matrix."""

    name: str
    label: str
    """How the table and the messages call it."""
    configs: tuple[str, ...]
    """The conf/trainer configs that select it (the first one in messages)."""

    @property
    def trainer(self) -> str:
        return self.configs[0]


STRATEGY_COLUMNS = (
    Strategy("single", "one device", ("gpu", "cpu")),
    Strategy("ddp", "DDP", ("ddp", "ddp_cpu")),
    Strategy("fsdp", "FSDP", ("fsdp",)),
    Strategy("deepspeed_zero2", "DeepSpeed ZeRO-2", ("deepspeed_zero2",)),
    Strategy("deepspeed_zero3", "DeepSpeed ZeRO-3", ("deepspeed_zero3",)),
)
"""DeepSpeed's stages 0 to 2 (weights whole on every GPU) share the ZeRO-2 column; Lightning's
`auto` strategy is one device, or DDP on several, which run the same cells."""
COLUMNS = {column.name: column for column in STRATEGY_COLUMNS}
MATRIX_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")
"""No rule depends on the precision: Lightning's single-device, DDP and DeepSpeed precision
plugins take all three (DeepSpeed keeps fp32 master weights for both bf16 settings), and leash
runs all three on CPU too (bf16-mixed through CPU autocast)."""
CUDA_ONLY = frozenset({"fsdp", "deepspeed_zero2", "deepspeed_zero3"})


@dataclass(frozen=True)
class Rule:
    """Cells that cannot run: these families on these strategies (every precision), and why."""

    families: frozenset[str]
    strategies: frozenset[str]
    why: str
    instead: tuple[str, ...]
    """Strategy columns that run the same families (each a supported cell)."""


OFFLINE = frozenset({"sft", "reward", "dpo"})
ONLINE = frozenset({"online_dpo", "ppo"})
RULES = (
    Rule(frozenset({"ppo"}), frozenset({"fsdp"}),
         "it uses manual optimisation (a training step is a rollout and several optimizer "
         "steps), which Lightning's FSDP strategy does not support (Lightning issue #19685)",
         ("deepspeed_zero2", "ddp")),
    Rule(OFFLINE | {"online_dpo"}, frozenset({"fsdp"}),
         "Lightning's FSDP cannot clip gradients by norm (Lightning issue #19235; leash clips "
         "at algo.max_grad_norm), and outside the training step FSDP keeps only a shard of "
         "each weight, while leash's evaluator and its final Hugging Face save read the whole "
         "policy there",
         ("deepspeed_zero2", "ddp")),
    Rule(OFFLINE, frozenset({"deepspeed_zero3"}),
         "ZeRO-3 partitions every weight and gathers it only inside the engine's forward, "
         "while leash's evaluator and its final Hugging Face save read the whole policy "
         "outside it",
         ("deepspeed_zero2", "ddp")),
    Rule(ONLINE, frozenset({"deepspeed_zero3"}),
         "ZeRO-3 gathers every weight inside each forward, so processes sampling responses of "
         "different lengths would wait on each other, and the evaluator and the final Hugging "
         "Face save read the whole policy outside the engine's forward",
         ("deepspeed_zero2", "ddp")),
)  # fmt: skip


def family_of(algo_name: str) -> str:
    """The matrix row of an algorithm (``algo.name``)."""
    return FAMILIES[ALGO_SCHEMAS[algo_name]]


def rule_for(family: str, strategy: str) -> Rule | None:
    """The rule that rejects a cell (every precision alike), or None when the cell runs."""
    return next((r for r in RULES if family in r.families and strategy in r.strategies), None)


def supported(family: str, strategy: str, precision: str) -> bool:
    """Whether leash runs ``family`` on the ``strategy`` column at ``precision``."""
    return precision in MATRIX_PRECISIONS and rule_for(family, strategy) is None


def _deepspeed_stage(strategy: Mapping) -> int:
    """ZeRO stage of a DeepSpeedStrategy config: its `config` (a mapping or a JSON file) wins
    over its `stage` argument, as in Lightning."""
    config = strategy.get("config")
    if isinstance(config, str) and Path(config).is_file():
        config = json.loads(Path(config).read_text())
    if isinstance(config, Mapping):
        return int((config.get("zero_optimization") or {}).get("stage", 0))
    return int(strategy.get("stage", 2))


TARGET_COLUMNS = {"FSDPStrategy": "fsdp", "DDPStrategy": "ddp", "SingleDeviceStrategy": "single"}


def strategy_column(strategy: Any) -> str | None:
    """The matrix column of a ``trainer.strategy`` value (a Lightning registry name or a
    `_target_` config); None outside the matrix."""
    if isinstance(strategy, Mapping):
        target = str(strategy.get("_target_", "")).rsplit(".", 1)[-1]
        if target == "DeepSpeedStrategy":
            return "deepspeed_zero3" if _deepspeed_stage(strategy) == 3 else "deepspeed_zero2"
        return TARGET_COLUMNS.get(target)
    name = str(strategy).lower()
    if name.startswith("deepspeed"):
        return "deepspeed_zero3" if name.startswith("deepspeed_stage_3") else "deepspeed_zero2"
    if name.startswith(("fsdp", "ddp")):
        return "fsdp" if name.startswith("fsdp") else "ddp"
    return "single" if name in ("auto", "single_device") else None


def rejection(algo_name: str, strategy: str) -> str | None:
    """The message for ``algo_name`` on a strategy column, or None when it runs."""
    rule = rule_for(family_of(algo_name), strategy)
    if rule is None:
        return None
    instead = " or ".join(f"trainer={COLUMNS[name].trainer}" for name in rule.instead)
    return (f"trainer.strategy: algo={algo_name} cannot run on {COLUMNS[strategy].label} "
            f"(trainer={COLUMNS[strategy].trainer}): {rule.why}; use {instead}")


def check_support(algo_name: str, trainer: Any) -> list[str]:
    """The matrix's verdict on a config (``trainer`` a typed TrainerConfig), as ``"key:
    message"`` lines: a rejected cell, or a CUDA-only strategy on ``accelerator=cpu``."""
    column = strategy_column(trainer.strategy)
    if column is None:
        return []
    problem = rejection(algo_name, column)
    if problem:
        return [problem]
    if column in CUDA_ONLY and trainer.accelerator == "cpu":
        return [f"trainer.accelerator: Lightning's {COLUMNS[column].label} strategy runs on "
                f"CUDA GPUs only, got accelerator=cpu; on CPU use trainer=ddp_cpu"]
    return []


def deepspeed_clip(algo: Any) -> float:
    """DeepSpeed's `gradient_clipping` (0 turns it off): ``algo.max_grad_norm`` for every
    algorithm, manual optimisation included, since DeepSpeed clips inside its own step."""
    return float(algo.max_grad_norm or 0.0)


# ------------------------------------------------------------------------------------ table
def _cell(family: str, strategy: str) -> str:
    rule = rule_for(family, strategy)
    return "yes" if rule is None else f"no ({RULES.index(rule) + 1})"


def render_matrix() -> str:
    """The matrix as a markdown table (one row per family, its algorithms named), then the
    precisions every "yes" holds at and the numbered reasons of the rejected cells."""
    header = ["algorithms"] + [
        f"{c.label} ({', '.join(f'`trainer={name}`' for name in c.configs)})"
        for c in STRATEGY_COLUMNS
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for schema, family in FAMILIES.items():
        names = ", ".join(f"`{n}`" for n, s in ALGO_SCHEMAS.items() if s is schema)
        cells = [_cell(family, column.name) for column in STRATEGY_COLUMNS]
        lines.append("| " + " | ".join([names, *cells]) + " |")
    precisions = ", ".join(f"`{p}`" for p in MATRIX_PRECISIONS)
    lines += ["", f"Every yes holds at each `trainer.precision` of the matrix ({precisions}): "
                  "no rule depends on the precision.", ""]
    for number, rule in enumerate(RULES, start=1):
        instead = " or ".join(f"`trainer={COLUMNS[n].trainer}`" for n in rule.instead)
        lines.append(f"{number}. {rule.why[0].upper()}{rule.why[1:]}. Use {instead}.")
    return "\n".join(lines) + "\n"
