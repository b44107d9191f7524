"""What each algorithm does with a ready Trainer: resolve artifacts, build models, fit, save.

One function per algorithm family; ``run_recipe`` dispatches on the schema of ``algo``. Recipes
receive a validated config and an instantiated Trainer from ``cli.py``; they load models through
the factory and instantiate nothing from the config themselves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning
import torch

from leash.checkpoints import resume_checkpoint
from leash.config import (
    DPOConfig,
    DPOLoss,
    OnlineDPOConfig,
    OnlineSchedule,
    PPOConfig,
    ReferenceUpdate,
    RewardConfig,
    RewardSource,
    SFTConfig,
    TrainConfig,
)
from leash.data.collate import PromptCollator
from leash.data.datamodule import PreferenceDataModule
from leash.data.types import PromptBatch
from leash.evaluation.evaluator import EvalContext, PolicyEvaluator
from leash.models.factory import (
    load_causal_lm,
    load_scalar_model,
    load_tokenizer,
    save_policy,
)
from leash.models.judge import Judge
from leash.models.policy_critic import build_policy_critic
from leash.models.reference import OnDemand, Reference, build_reference
from leash.modules.dpo import DPOModule, precompute_reference_logps
from leash.modules.online_dpo import OnlineDPOModule
from leash.modules.ppo import PPOModule
from leash.modules.reward import RewardModelModule
from leash.modules.sft import SFTModule
from leash.pipeline.cache import config_key, link_or_copy_tree
from leash.pipeline.hub import push_saved_model
from leash.pipeline.model_card import write_model_card
from leash.pipeline.stages import Stages
from leash.rollout.rewards import LearnedReward, build_reward_fn

log = logging.getLogger(__name__)


def last_checkpoint(cfg: TrainConfig) -> str | None:
    """The run folder's ``last.ckpt`` when resuming is on and a killed run left one."""
    path = resume_checkpoint(cfg.paths.output_dir, cfg.resume)
    if path is not None:
        log.info("resuming from %s", path)
        return str(path)
    return None


def write_artifacts(cfg: TrainConfig, **artifacts: str) -> None:
    """Record in the run folder which artifact folders this run used or produced."""
    path = Path(cfg.paths.output_dir) / "artifacts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(artifacts, indent=2))


def eval_prompts(
    stages: Stages, datamodule: PreferenceDataModule
) -> tuple[list[str], list[list[int]] | None]:
    """Held-out prompts every algorithm is evaluated on, as texts and (for real data) the data
    module's token ids: the task's held-out prompts, or the data's eval split."""
    if stages.task is not None:
        return stages.task.heldout_prompts, None
    datamodule.setup("fit")
    prompts = datamodule.prompts("eval")
    return [p.prompt for p in prompts], [p.prompt_ids for p in prompts]


def proxy_reward_model(stages: Stages, tokenizer) -> torch.nn.Module | None:
    """The learned reward model that scores every policy's samples, when ``eval.proxy_reward``
    asks for it (default: on real data, where there is no gold reward)."""
    settings = stages.cfg.eval
    wanted = stages.task is None if settings.proxy_reward is None else settings.proxy_reward
    if not (settings.enabled and wanted):
        return None
    return load_scalar_model(stages.reward_model(), stages.cfg.model, tokenizer, trainable=False)


def build_evaluator(
    stages: Stages,
    datamodule: PreferenceDataModule,
    tokenizer,
    reference: Reference | None = None,
    reward_model: torch.nn.Module | None = None,
) -> PolicyEvaluator | None:
    """The common evaluator of this run's policy (None when ``eval.enabled=false``).

    Args:
        reference: π_ref of the evaluated policy; None when the policy is its own reference.
        reward_model: the proxy reward model; None loads it when ``eval.proxy_reward`` asks.
    """
    settings = stages.cfg.eval
    if not settings.enabled:
        return None
    texts, ids = eval_prompts(stages, datamodule)
    context = EvalContext(
        tokenizer,
        texts,
        prompt_ids=ids,
        task=stages.task,
        reference=reference,
        reward_model=reward_model,
        judge=Judge.load(settings.judge, settings.batch_size) if settings.judge else None,
    )
    return PolicyEvaluator(context, settings)


def allowed_tokens(stages: Stages) -> torch.Tensor | None:
    """The policy's support on a built-in task (response words + EOS); None for real data."""
    return stages.task.allowed_token_ids() if stages.task is not None else None


def save_model(
    stages: Stages, trainer: lightning.Trainer, model, tokenizer, name: str, started_from: str
) -> Path:
    """Write a trained model in Hugging Face format, with its model card, to ``<run>/<name>``
    (rank 0); ``started_from`` is where its weights were loaded from before training."""
    path = Path(stages.cfg.paths.output_dir) / name
    if trainer.is_global_zero:
        save_policy(model, tokenizer, path)
        write_model_card(stages.cfg, path, stages.job_overrides, started_from)
        log.info("%s saved to %s", name.replace("_", " "), path)
    return path


def save_final_policy(
    stages: Stages, trainer: lightning.Trainer, module, tokenizer, started_from: str
) -> Path:
    """Write the trained policy and its card to ``<run>/policy`` (rank 0)."""
    return save_model(stages, trainer, module.policy, tokenizer, "policy", started_from)


# ------------------------------------------------------------------------------------------ SFT
def run_sft(cfg: TrainConfig, trainer: lightning.Trainer, stages: Stages) -> Path:
    """Train the SFT policy, or reuse the cached one for this config, and evaluate it.

    The final policy is saved in Hugging Face format in ``<run>/policy`` and stored in the
    artifact cache, where every later stage (and every job of a sweep) finds it.
    """
    base_path = stages.base_model_path
    tokenizer = load_tokenizer(stages.tokenizer_path(), cfg.model)
    datamodule = PreferenceDataModule(
        stages.sft_data(), tokenizer, view="sft", seed=cfg.seed, split_seed=stages.upstream_seed
    )
    # The SFT policy is its own reference: its KL is 0 and the frontier starts at it.
    evaluator = build_evaluator(stages, datamodule, tokenizer)
    allowed = allowed_tokens(stages)
    key = stages.sft_key()
    if stages.cache.has("sft", key):
        cached = stages.sft_policy_path()
        log.info("SFT policy for this config is cached (%s): evaluating it, not retraining", cached)
        policy = load_causal_lm(str(cached), cfg.model, tokenizer, trainable=False)
        module = SFTModule(policy, cfg.algo, allowed, evaluator)
        trainer.validate(module, datamodule=datamodule)
        write_artifacts(cfg, base_model=base_path, policy=str(cached))
        return cached
    policy = load_causal_lm(base_path, cfg.model, tokenizer, trainable=True, peft=cfg.peft)
    module = SFTModule(policy, cfg.algo, allowed, evaluator)
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint(cfg))
    run_policy = save_final_policy(stages, trainer, module, tokenizer, base_path)
    if trainer.is_global_zero:
        cached = stages.cache.store("sft", key, lambda tmp: link_or_copy_tree(run_policy, tmp))
        write_artifacts(
            cfg, base_model=base_path, policy=str(run_policy), cached_policy=str(cached)
        )
    return run_policy


# ------------------------------------------------------------------------------ DPO family
def attach_precomputed_reference(
    stages: Stages, datamodule: PreferenceDataModule, sft_path: str, reference: Reference
) -> None:
    """Reference log-probs of every pair, computed once (cached) and attached to the data."""
    allowed = allowed_tokens(stages)
    datamodule.setup("fit")
    # The pairs' own tokens, not the config that made them: any change of source, split, seed,
    # row caps, template or truncation that moves a token or a row gives a new key.
    key = config_key(
        "reference_logps", sft_path, allowed is not None,
        *(datamodule.pairs_digest(split) for split in ("train", "eval")),
    )

    def compute(folder: Path) -> None:
        with reference.scope() as network:
            logps = {
                split: precompute_reference_logps(
                    network, datamodule.ordered_dataloader(split), allowed
                )
                for split in ("train", "eval")
            }
        torch.save(logps, folder / "logps.pt")

    folder = stages.cache.get_or_build("reference_logps", key, compute)
    for split, (chosen, rejected) in torch.load(folder / "logps.pt").items():
        datamodule.attach_reference_logps(split, chosen, rejected)


def run_dpo(cfg: TrainConfig, trainer: lightning.Trainer, stages: Stages) -> Path:
    """Train a DPO-family policy from the SFT policy on the shared preference pairs."""
    algo: DPOConfig = cfg.algo
    sft_path = stages.sft_policy()
    tokenizer = load_tokenizer(sft_path, cfg.model)
    datamodule = PreferenceDataModule(
        stages.preference_data(), tokenizer, "pairs", cfg.seed, stages.upstream_seed
    )
    allowed = allowed_tokens(stages)
    policy = load_causal_lm(sft_path, cfg.model, tokenizer, trainable=True, peft=cfg.peft)
    reference = build_reference(
        algo.reference,
        load=lambda: load_causal_lm(sft_path, cfg.model, tokenizer, trainable=False),
        policy=policy,
        used_in_training=algo.loss != DPOLoss.simpo,
    )
    if reference.precomputed:
        attach_precomputed_reference(stages, datamodule, sft_path, reference)
    evaluator = build_evaluator(
        stages, datamodule, tokenizer, reference, proxy_reward_model(stages, tokenizer)
    )
    module = DPOModule(policy, reference, algo, allowed, evaluator)
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint(cfg))
    run_policy = save_final_policy(stages, trainer, module, tokenizer, sft_path)
    write_artifacts(cfg, reference=sft_path, data=str(datamodule.cfg.path), policy=str(run_policy))
    return run_policy


# --------------------------------------------------------------------------- reward model
def run_reward(cfg: TrainConfig, trainer: lightning.Trainer, stages: Stages) -> Path:
    """Train a Bradley-Terry reward model from the SFT policy on the shared preference pairs."""
    sft_path = stages.sft_policy()
    tokenizer = load_tokenizer(sft_path, cfg.model)
    datamodule = PreferenceDataModule(
        stages.preference_data(), tokenizer, "pairs", cfg.seed, stages.upstream_seed
    )
    model = load_scalar_model(sft_path, cfg.model, tokenizer, trainable=True, peft=cfg.peft)
    module = RewardModelModule(model, cfg.algo)
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint(cfg))
    reward_model = module.reward_model
    run_model = save_model(stages, trainer, reward_model, tokenizer, "reward_model", sft_path)
    if not trainer.is_global_zero:
        return run_model
    cached = stages.cache.store(
        "reward", stages.own_reward_key(), lambda tmp: link_or_copy_tree(run_model, tmp)
    )
    write_artifacts(
        cfg, policy=sft_path, reward_model=str(run_model), cached_reward_model=str(cached)
    )
    log.info("reward model cached as %s", cached)
    return run_model


# ------------------------------------------------------------------------------------------ PPO
def run_ppo(cfg: TrainConfig, trainer: lightning.Trainer, stages: Stages) -> Path:
    """PPO-RLHF (learned reward) or PPO-GT (gold reward) from the SFT policy, on the prompts of
    the shared preference pairs; the same loop for RLOO, GRPO and REINFORCE (no critic). The
    reward model is trained (or found in the cache) whenever ``algo.reward=learned``."""
    algo: PPOConfig = cfg.algo
    sft_path = stages.sft_policy()
    tokenizer = load_tokenizer(sft_path, cfg.model)
    reward_path = stages.reward_model() if algo.reward == RewardSource.learned else None
    datamodule = PreferenceDataModule(
        stages.preference_data(), tokenizer, "prompts", cfg.seed, stages.upstream_seed
    )
    policy_critic = build_policy_critic(
        algo, cfg.model, cfg.peft, tokenizer, sft_path=sft_path, reward_model_path=reward_path
    )
    reward_fn = build_reward_fn(
        algo, cfg.model, tokenizer, task=stages.task, reward_model_path=reward_path,
        judge=cfg.data.relabel_with,
    )
    task = stages.task
    evaluator = build_evaluator(
        stages,
        datamodule,
        tokenizer,
        policy_critic.reference,
        reward_fn.model if isinstance(reward_fn, LearnedReward) else proxy_reward_model(
            stages, tokenizer
        ),
    )
    module = PPOModule(
        policy_critic,
        reward_fn,
        algo,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        max_new_tokens=task.config.max_response_length if task is not None else None,
        allowed_token_ids=allowed_tokens(stages),
        max_grad_norm=algo.max_grad_norm,
        evaluator=evaluator,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint(cfg))
    run_policy = save_final_policy(stages, trainer, module, tokenizer, sft_path)
    write_artifacts(cfg, reference=sft_path, reward_model=str(reward_path), policy=str(run_policy))
    return run_policy


# ------------------------------------------------------------------- on-policy DPO family
def training_prompts(datamodule: PreferenceDataModule) -> PromptBatch:
    """Every deduplicated training prompt, left padded: what an iterative DPO round samples."""
    datamodule.setup("fit")
    return PromptCollator(datamodule.pad_id)(datamodule.prompts("train"))


def run_online_dpo(cfg: TrainConfig, trainer: lightning.Trainer, stages: Stages) -> Path:
    """On-policy or iterative DPO from the SFT policy, on the prompts of the shared preference
    pairs; pairs are ordered by the learned reward model (trained, or found in the cache,
    whenever ``algo.reward=learned``, as for PPO), the task's gold reward, or the judge of
    synthetic-gold mode."""
    algo: OnlineDPOConfig = cfg.algo
    sft_path = stages.sft_policy()
    tokenizer = load_tokenizer(sft_path, cfg.model)
    reward_path = stages.reward_model() if algo.reward == RewardSource.learned else None
    datamodule = PreferenceDataModule(
        stages.preference_data(), tokenizer, "prompts", cfg.seed, stages.upstream_seed
    )
    policy = load_causal_lm(sft_path, cfg.model, tokenizer, trainable=True, peft=cfg.peft)

    def load_sft() -> torch.nn.Module:
        return load_causal_lm(sft_path, cfg.model, tokenizer, trainable=False)

    reference = build_reference(
        algo.reference, load=load_sft, policy=policy, used_in_training=algo.loss != DPOLoss.simpo
    )
    reward_fn = build_reward_fn(
        algo, cfg.model, tokenizer, task=stages.task, reward_model_path=reward_path,
        judge=cfg.data.relabel_with,
    )
    moving = algo.reference_update == ReferenceUpdate.last_round  # the KL stays to SFT
    evaluator = build_evaluator(
        stages,
        datamodule,
        tokenizer,
        OnDemand(load_sft) if moving else reference,
        reward_fn.model if isinstance(reward_fn, LearnedReward) else proxy_reward_model(
            stages, tokenizer
        ),
    )
    iterative = algo.schedule == OnlineSchedule.iterative
    task = stages.task
    module = OnlineDPOModule(
        policy,
        reference,
        reward_fn,
        algo,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        max_new_tokens=task.config.max_response_length if task is not None else None,
        allowed_token_ids=allowed_tokens(stages),
        round_prompts=training_prompts(datamodule) if iterative else None,
        evaluator=evaluator,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint(cfg))
    run_policy = save_final_policy(stages, trainer, module, tokenizer, sft_path)
    write_artifacts(cfg, reference=sft_path, reward_model=str(reward_path), policy=str(run_policy))
    return run_policy


Recipe = Callable[[TrainConfig, lightning.Trainer, Stages], Path]
"""A recipe returns the folder of the model it saved (or, cached, found)."""
RECIPES: dict[type, Recipe] = {
    SFTConfig: run_sft,
    DPOConfig: run_dpo,
    RewardConfig: run_reward,
    PPOConfig: run_ppo,
    OnlineDPOConfig: run_online_dpo,
}


def run_recipe(cfg: TrainConfig, trainer: lightning.Trainer, overrides: Sequence[str]) -> None:
    """Run the recipe of ``cfg.algo``'s family (``overrides`` build its upstream stages), then,
    on rank 0 with everything saved, push its model when ``hub.push`` asks."""
    saved = RECIPES[type(cfg.algo)](cfg, trainer, Stages(cfg, overrides))
    if trainer.is_global_zero:
        push_saved_model(cfg, saved)
