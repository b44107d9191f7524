"""The upstream artifacts a run needs, each built once and cached under its config's key.

Keys follow the data flow: the tiny base model depends on its shape and tokenizer (a BPE
tokenizer on the data it is trained on); the SFT corpus on the task; the SFT policy on the base
model, the SFT recipe, the data and the seed; the task's preference pairs on the SFT policy;
judge-relabelled pairs (``data.relabel_with``) on the pairs they relabel, the judge, the
temperature and the seed; the reward model on the pairs and its recipe. A change anywhere
upstream gives a new key, so nothing stale is ever reused. The relabelling settings reach only
the pairs and what learns from them: the base model and the SFT policy are shared by every judge.

Training stages (SFT, reward model) that are not cached run as ``leash train`` in a child
process, with this job's model/data/trainer/seed overrides plus ``upstream.<stage>``: the same
code path as a user's own run, its own clean peak-memory measurement, and a stable run folder
under the cache so a killed stage resumes from its last checkpoint.

Seeds: with ``upstream.seed=per_run`` every upstream artifact follows the run's seed; with
``shared`` they are all built with :data:`SHARED_SEED`, so the runs of a seed sweep share their
data (policy, pairs, reward model, held-out split) and differ only in their training noise.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from leash.config import DataConfig, DataSource, TrainConfig, UpstreamSeed, validate
from leash.data.sources import load_source, readable_rows
from leash.data.tasks import SyntheticTask
from leash.models.tiny import write_tiny_checkpoint
from leash.models.tokenizers import build_bpe_tokenizer, build_byte_tokenizer
from leash.pipeline.cache import ArtifactCache, config_key
from leash.pipeline.compose import compose_train
from leash.pipeline.launcher import StageFailed, run_train
from leash.pipeline.overrides import upstream_overrides

log = logging.getLogger(__name__)

SHARED_SEED = 0
"""The seed of every upstream artifact under ``upstream.seed=shared``."""


def training_dynamics(cfg: TrainConfig) -> dict:
    """The Trainer settings that change what training produces (not where it is written)."""
    keys = ("precision", "gradient_clip_val", "accumulate_grad_batches", "devices", "strategy")
    return {key: cfg.trainer.get(key) for key in keys}


def source_data(data: DataConfig) -> DataConfig:
    """``data`` without the relabelling settings: what the base model and SFT depend on."""
    defaults = DataConfig(name=data.name)
    return dataclasses.replace(
        data, relabel_with=None, relabel_temperature=defaults.relabel_temperature
    )


def text_source(data: DataConfig) -> dict:
    """What identifies the texts a BPE tokenizer is trained on (not how they are batched)."""
    return {
        "source": data.source,
        "path": data.path,
        "subset": data.subset,
        "train_split": data.train_split,
    }


def training_texts(data: DataConfig) -> Iterator[str]:
    """Every text of the train split of ``data``: prompts, responses, message contents."""
    for row in readable_rows(load_source(data).train):
        for name in ("prompt", "chosen", "rejected", "response"):
            value = row.get(name)
            if isinstance(value, str):
                yield value
            elif isinstance(value, list):
                yield from (m["content"] for m in value if isinstance(m, dict) and "content" in m)


class Stages:
    """Resolves a run's config into ready artifact folders, building what the cache lacks."""

    def __init__(self, cfg: TrainConfig, job_overrides: Sequence[str] = ()):
        self.cfg = cfg
        self.job_overrides = list(job_overrides)
        self.cache = ArtifactCache(cfg.paths.cache_dir)

    @cached_property
    def task(self) -> SyntheticTask | None:
        """The built-in task when ``data.source=task``, else None."""
        if self.cfg.data.source != DataSource.task:
            return None
        return SyntheticTask.from_config(self.cfg.data.task)

    def base_model_key(self) -> str:
        """Key of the tiny preset: its shape and tokenizer settings, and what its vocabulary
        comes from (the task, the bytes, or the texts a BPE is trained on)."""
        tiny = self.cfg.model.tiny
        if self.task is not None:
            vocabulary: object = self.cfg.data.task
        elif tiny.tokenizer == "bpe":
            vocabulary = {"bpe": text_source(self.cfg.data)}
        else:
            vocabulary = "byte-level"
        return config_key("tiny", tiny, vocabulary)

    def tiny_tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer the tiny preset is built with (``model.tiny.tokenizer``)."""
        tiny = self.cfg.model.tiny
        if self.task is not None:
            if tiny.tokenizer == "bpe":
                raise ValueError(
                    "model.tiny.tokenizer: `bpe` trains on real text; a built-in task has its "
                    "own word-level vocabulary (use `auto`)"
                )
            return self.task.tokenizer()
        if tiny.tokenizer == "bpe":
            log.info("training a BPE tokenizer (%d tokens) on %s", tiny.bpe_vocab_size,
                     self.cfg.data.path)
            return build_bpe_tokenizer(training_texts(self.cfg.data), tiny.bpe_vocab_size)
        return build_byte_tokenizer()

    @cached_property
    def base_model_path(self) -> str:
        """The starting network: a hub name or folder, or the cached tiny preset's folder."""
        model = self.cfg.model
        if model.name_or_path != "tiny":
            return model.name_or_path
        folder = self.cache.get_or_build(
            "base_model",
            self.base_model_key(),
            lambda tmp: write_tiny_checkpoint(model.tiny, self.tiny_tokenizer(), tmp),
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
        data = source_data(cfg.data)
        return config_key("sft", cfg.model, data, cfg.algo, training_dynamics(cfg), cfg.seed)

    def sft_policy_path(self) -> Path:
        """Folder of the cached SFT policy for this config (may not exist yet)."""
        return self.cache.path("sft", self.sft_key())

    # ------------------------------------------------------------------------ upstream stages
    @property
    def upstream_seed(self) -> int:
        """The seed the upstream artifacts and the held-out split are built with: this run's,
        or :data:`SHARED_SEED` under ``upstream.seed=shared``."""
        return SHARED_SEED if self.cfg.upstream.seed == UpstreamSeed.shared else self.cfg.seed

    def _upstream(self, algo: str, extra: Sequence[str]) -> tuple[Stages, list[str]]:
        """The typed config of an upstream stage, composed exactly as its child process will."""
        if algo != "sft" and self.cfg.upstream.sft_policy:  # later stages share the given policy
            extra = [f"upstream.sft_policy={self.cfg.upstream.sft_policy}", *extra]
        if self.cfg.upstream.seed == UpstreamSeed.shared:
            extra = [f"seed={SHARED_SEED}", *extra]
        overrides = upstream_overrides(self.job_overrides, algo, extra)
        return Stages(validate(compose_train(overrides)), overrides), overrides

    def _run_stage(self, kind: str, key: str, overrides: list[str]) -> Path:
        """Run ``leash train <overrides>`` in a child process unless ``kind/key`` is cached."""

        def train_in_child(_: Path) -> None:
            run_dir = self.cache.root / "runs" / f"{kind}-{key}"
            log.info("stage %s: not cached; training it now (run folder %s)", kind, run_dir)
            child = run_train(overrides, run_dir)
            if child.code != 0:
                raise StageFailed(kind, run_dir, child)
            if not self.cache.has(kind, key):
                raise RuntimeError(f"the {kind} stage finished but stored no artifact {key}")

        return self.cache.build_once(kind, key, train_in_child)

    @cached_property
    def _sft_upstream(self) -> tuple[Stages, list[str]]:
        """The SFT stage this job's policy starts from, and its overrides (composed once)."""
        return self._upstream("sft", self.cfg.upstream.sft)

    @cached_property
    def _reward_upstream(self) -> tuple[Stages, list[str]]:
        """The reward-model stage PPO scores with, and its overrides (composed once)."""
        return self._upstream("reward", self.cfg.upstream.reward)

    def sft_policy(self) -> str:
        """The SFT policy every algorithm starts from (and DPO/PPO use as the reference)."""
        if self.cfg.upstream.sft_policy:
            return self.cfg.upstream.sft_policy
        sft, overrides = self._sft_upstream
        return str(self._run_stage("sft", sft.sft_key(), overrides))

    def _sft_identity(self) -> str:
        """What identifies the SFT policy in downstream keys: the given policy, or its key."""
        return self.cfg.upstream.sft_policy or self._sft_upstream[0].sft_key()

    def source_pairs_key(self) -> str:
        """Key of the pairs before any relabelling (task pairs depend on the SFT policy that
        sampled them)."""
        if self.task is None:
            return config_key("pairs", source_data(self.cfg.data))
        return config_key("pairs", self._sft_identity(), self.cfg.data.task, self.upstream_seed)

    def pairs_key(self) -> str:
        """Key of the preference data every learner reads (relabelled, when a judge is set)."""
        data = self.cfg.data
        if data.relabel_with is None:
            return self.source_pairs_key()
        return config_key(
            "relabelled", self.source_pairs_key(), data.relabel_with, data.relabel_temperature,
            self.upstream_seed,
        )

    def source_pairs(self) -> DataConfig:
        """The pairs before relabelling: the task's pairs (sampled, cached) or the source."""
        if self.task is None:
            return source_data(self.cfg.data)
        from leash.pipeline.task_pairs import write_task_pairs

        policy = self.sft_policy()
        folder = self.cache.get_or_build(
            "pairs",
            self.source_pairs_key(),
            lambda tmp: write_task_pairs(self.task, policy, self.upstream_seed, tmp),
        )
        return dataclasses.replace(
            source_data(self.cfg.data), source=DataSource.disk, path=str(folder)
        )

    def preference_data(self) -> DataConfig:
        """The data config of the pairs view: the source pairs, or their judge-relabelled copy
        (cached, read back as ``data.source=disk``)."""
        data = self.cfg.data
        if data.relabel_with is None:
            return self.source_pairs()
        from leash.pipeline.relabel import relabel_with_judge

        source = self.source_pairs()
        folder = self.cache.get_or_build(
            "pairs",
            self.pairs_key(),
            lambda tmp: relabel_with_judge(
                source, data.relabel_with, data.relabel_temperature, self.upstream_seed, tmp
            ),
        )
        return dataclasses.replace(data, source=DataSource.disk, path=str(folder))

    def reward_key(self) -> str:
        """Key of the reward model trained on this job's pairs with the reward recipe."""
        return self._reward_upstream[0].own_reward_key()

    def own_reward_key(self) -> str:
        """Key of the reward model this (algo=reward) config trains."""
        cfg = self.cfg
        return config_key(
            "reward",
            self.pairs_key(),
            self._sft_identity(),
            cfg.model,
            cfg.data,
            cfg.algo,
            training_dynamics(cfg),
            cfg.seed,
        )

    def reward_model(self) -> str:
        """The learned reward model PPO scores rollouts with (trained once per config)."""
        if self.cfg.upstream.reward_model:
            return self.cfg.upstream.reward_model
        return str(self._run_stage("reward", self.reward_key(), self._reward_upstream[1]))
