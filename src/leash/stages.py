"""The upstream artifacts a run needs, each built once and cached under its config's key.

Keys follow the data flow: the tiny base model depends on its shape and tokenizer; the SFT
corpus on the task; the SFT policy on the base model, the SFT recipe, the data and the seed.
A change anywhere upstream gives a new key, so nothing stale is ever reused.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import cached_property
from pathlib import Path

from leash.cache import ArtifactCache, config_key
from leash.config import DataConfig, DataSource, TrainConfig
from leash.data.tasks import SyntheticTask
from leash.models.tiny import write_tiny_checkpoint
from leash.models.tokenizers import build_byte_tokenizer

log = logging.getLogger(__name__)


def training_dynamics(cfg: TrainConfig) -> dict:
    """The Trainer settings that change what training produces (not where it is written)."""
    keys = ("precision", "gradient_clip_val", "accumulate_grad_batches", "devices", "strategy")
    return {key: cfg.trainer.get(key) for key in keys}


class Stages:
    """Resolves a run's config into ready artifact folders, building what the cache lacks."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.cache = ArtifactCache(cfg.paths.cache_dir)

    @cached_property
    def task(self) -> SyntheticTask | None:
        """The built-in task when ``data.source=task``, else None."""
        if self.cfg.data.source != DataSource.task:
            return None
        return SyntheticTask.from_config(self.cfg.data.task)

    @cached_property
    def base_model_path(self) -> str:
        """The starting network: a hub name or folder, or the cached tiny preset's folder."""
        model = self.cfg.model
        if model.name_or_path != "tiny":
            return model.name_or_path
        vocabulary = self.cfg.data.task if self.task is not None else "byte-level"
        key = config_key("tiny", model.tiny, vocabulary)
        tokenizer = self.task.tokenizer() if self.task is not None else build_byte_tokenizer()
        folder = self.cache.get_or_build(
            "base_model", key, lambda tmp: write_tiny_checkpoint(model.tiny, tokenizer, tmp)
        )
        return str(folder)

    def tokenizer_path(self) -> str:
        """Where the tokenizer of every role is loaded from."""
        return self.cfg.model.tokenizer or self.base_model_path

    def sft_data(self) -> DataConfig:
        """The data config of the SFT view: the task's own corpus, or the preference source."""
        if self.task is None:
            return self.cfg.data
        key = config_key("sft_corpus", self.cfg.data.task)
        folder = self.cache.get_or_build(
            "sft_corpus", key, lambda tmp: self.task.sft_corpus().save_to_disk(str(tmp))
        )
        return dataclasses.replace(
            self.cfg.data, source=DataSource.disk, path=str(folder), eval_split=None
        )

    def sft_key(self) -> str:
        """Key of the SFT policy trained by this config's model, data, SFT recipe and seed."""
        cfg = self.cfg
        return config_key("sft", cfg.model, cfg.data, cfg.algo, training_dynamics(cfg), cfg.seed)

    def sft_policy_path(self) -> Path:
        """Folder of the cached SFT policy for this config (may not exist yet)."""
        return self.cache.path("sft", self.sft_key())
