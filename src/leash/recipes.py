"""What each algorithm does with a ready Trainer: resolve artifacts, build models, fit, save.

One function per algorithm; ``run_recipe`` dispatches on ``algo.name``. Recipes receive a
validated config and an instantiated Trainer from ``cli.py`` and instantiate nothing from the
config themselves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import lightning

from leash.cache import link_or_copy_tree
from leash.config import TrainConfig
from leash.data.datamodule import PreferenceDataModule
from leash.evaluation.evaluator import EvalContext
from leash.models.factory import load_causal_lm, load_tokenizer, save_policy
from leash.modules.sft import SFTModule
from leash.stages import Stages

log = logging.getLogger(__name__)


def last_checkpoint(cfg: TrainConfig) -> str | None:
    """The run folder's ``last.ckpt`` when resuming is on and a killed run left one."""
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if cfg.resume and path.exists():
        log.info("resuming from %s", path)
        return str(path)
    return None


def write_artifacts(cfg: TrainConfig, **artifacts: str) -> None:
    """Record in the run folder which artifact folders this run used or produced."""
    path = Path(cfg.paths.output_dir) / "artifacts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(artifacts, indent=2))


def eval_prompts(stages: Stages, datamodule: PreferenceDataModule) -> list[str]:
    """Held-out prompts every algorithm is evaluated on: the task's, or the data's eval split."""
    if stages.task is not None:
        return stages.task.heldout_prompts
    datamodule.setup("fit")
    return datamodule.eval_prompts()


def run_sft(cfg: TrainConfig, trainer: lightning.Trainer) -> None:
    """Train the SFT policy, or reuse the cached one for this config, and evaluate it.

    The final policy is saved in Hugging Face format in ``<run>/policy`` and stored in the
    artifact cache, where every later stage (and every job of a sweep) finds it.
    """
    stages = Stages(cfg)
    base_path = stages.base_model_path
    tokenizer = load_tokenizer(stages.tokenizer_path(), cfg.model)
    datamodule = PreferenceDataModule(stages.sft_data(), tokenizer, view="sft", seed=cfg.seed)
    # The SFT policy is its own reference: its KL is 0 and the frontier starts at it.
    context = EvalContext(tokenizer, eval_prompts(stages, datamodule), task=stages.task)
    key = stages.sft_key()
    if stages.cache.has("sft", key):
        cached = stages.sft_policy_path()
        log.info("SFT policy for this config is cached (%s): evaluating it, not retraining", cached)
        module = SFTModule(load_causal_lm(str(cached), cfg.model, tokenizer, trainable=False), cfg.algo)
        module.eval_context = context
        trainer.validate(module, datamodule=datamodule)
        write_artifacts(cfg, base_model=base_path, policy=str(cached))
        return
    policy = load_causal_lm(base_path, cfg.model, tokenizer, trainable=True, peft=cfg.peft)
    module = SFTModule(policy, cfg.algo)
    module.eval_context = context
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint(cfg))
    if trainer.is_global_zero:
        run_policy = Path(cfg.paths.output_dir) / "policy"
        save_policy(module.policy, tokenizer, run_policy)
        cached = stages.cache.store("sft", key, lambda tmp: link_or_copy_tree(run_policy, tmp))
        write_artifacts(cfg, base_model=base_path, policy=str(run_policy), cached_policy=str(cached))
        log.info("SFT policy saved to %s (cached as %s)", run_policy, cached)


RECIPES: dict[str, Callable[[TrainConfig, lightning.Trainer], None]] = {"sft": run_sft}


def run_recipe(cfg: TrainConfig, trainer: lightning.Trainer) -> None:
    """Run the recipe of ``cfg.algo.name``."""
    RECIPES[cfg.algo.name](cfg, trainer)
