"""PPO-RLHF as a LightningModule with manual optimisation: one training step = one PPO iteration.

:meth:`PPOModule.training_step` reads top to bottom, one named function per stage:
sample responses -> score the rollout (log-probs, reference log-probs, values, rewards) ->
shape rewards (per-token KL penalty, score on the last token, missing-EOS penalty; optional
whitening) -> advantages (optional whitening) -> ``ppo_epochs`` x ``num_minibatches``
clipped updates -> statistics -> KL-controller (and REINFORCE baseline) update.

The same loop serves every estimator of ``algo.advantage`` (chosen in
:mod:`leash.rollout.advantages`): GAE with a critic (PPO), or the critic-free RLOO, GRPO and
REINFORCE, which hold no critic, no value loss and no critic parameter group, and log no value
metrics (``loss/value_avg`` and ``val/clipfrac_avg`` are absent, not zero). REINFORCE's
moving-average baseline follows the batch mean of ``objective/rlhf_reward`` (its sequence
reward ``R``) and is saved in checkpoints with the KL coefficient.

Steps and schedule: every minibatch update is one optimizer step, so Lightning's
``global_step`` counts minibatch updates and a run of ``algo.max_steps`` iterations is
:func:`leash.config.optimizer_steps` trainer steps (the Trainer's ``max_steps``; the module also
stops after ``algo.max_steps`` iterations). The learning-rate schedule spans the same steps.

Processes (DDP): each process samples its own rollouts from its shard of the prompts. Whitening
statistics, the KL fed to the adaptive controller, the non-finite guard and the logged statistics
are sums reduced through the strategy, so every process takes the same decisions. The
minibatches are drawn from the rollout of every process (:mod:`leash.rollout.minibatches`), and
each process weighs its part of one by its share of the minibatch's tokens or rows
(:class:`ProcessShares`), so N processes train exactly what one process given the whole batch
trains.

Gradient clipping: Lightning rejects ``Trainer(gradient_clip_val=...)`` under manual
optimisation, so the norm comes in as ``max_grad_norm`` (applied with ``clip_gradients``).

Non-finite values: after scoring, after the advantages and for every minibatch loss (before
its backward), a NaN or inf raises :class:`~leash.modules.guard.NonFiniteError` naming the
iteration and the quantity; the gradients of every update are checked before it as in every
module (:mod:`leash.modules.guard`). The exception leaves ``training_step`` before
``on_train_batch_end``, where ``ModelCheckpoint`` saves, so the last checkpoint on disk stays the
last good one. PPO records no loss trend (see :mod:`leash.modules.guard`).

Validation: the data module's ``prompts`` view validates on the held-out preference pairs, where
``validation_step`` scores the policy as an implicit reward model, ``kl_coef · log pi/pi_ref``
(:func:`~leash.modules.ppo_stats.implicit_rewards`): ``eval/implicit_rm_accuracy`` and its gold
companions, as DPO logs them. The loop ends with the common evaluator sampling the policy
(:mod:`leash.modules.evaluated`).

Dropout is disabled in every network (as TRL does for PPO): rollout-time and update-time
forwards must agree for the first ratio to be exactly 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from leash.config import (
    AdvantageEstimator,
    LossType,
    PPOConfig,
    exact_div,
    updates_per_step,
)
from leash.data.types import PreferenceBatch, PromptBatch
from leash.evaluation.evaluator import PolicyEvaluator
from leash.losses.advantages import MovingAverageBaseline
from leash.losses.kl import AdaptiveKLController, FixedKLController, KLController
from leash.losses.ppo import Advantages, clipped_value_loss, entropy_from_logits, masked_mean
from leash.models.factory import disable_dropout
from leash.models.policy_critic import PolicyCritic
from leash.modules.evaluated import EvaluatedModule
from leash.modules.guard import check_finite
from leash.modules.optim import adamw_with_schedule, policy_critic_groups
from leash.modules.ppo_stats import (
    MinibatchStats,
    implicit_rewards,
    reduce_metrics,
    rollout_metrics,
    stopwatch,
    update_metrics,
)
from leash.rollout.advantages import advantages, policy_loss, shape, tokens_per_update
from leash.rollout.minibatches import process_minibatches
from leash.rollout.rewards import RewardFn
from leash.rollout.rollout import Responses, Rollout, sample, score_rollout


def minibatch_size(rollout_size: int, num_minibatches: int) -> int:
    """Rows per minibatch; a rollout that does not split exactly fails, saying how to fix it."""
    return exact_div(
        rollout_size,
        num_minibatches,
        "PPO rollout batch (prompts per process x algo.samples_per_prompt) vs "
        "algo.num_minibatches (the data module gives full batches only; the config check "
        "guarantees data.batch_size x algo.samples_per_prompt divides)",
    )


# ------------------------------------------------------------------------------- minibatches
class ProcessShares(NamedTuple):
    """Weights of this process's part of a minibatch (exactly 1 in one process): a mean over
    its part times its share is, averaged over the processes, the mean over the whole
    minibatch (:meth:`~leash.modules.guard.GuardedModule.share_of_processes`)."""

    tokens: torch.Tensor
    """Of every token mean: the losses' and the diagnostics'."""
    loss: torch.Tensor
    """Of the policy loss: by ``algo.loss_type``, its tokens (bnpo), its rows (grpo) or 1
    (dapo, whose divisor already counts every process's tokens); 0 for a stand-in row."""


class MinibatchLoss(NamedTuple):
    """The loss of one minibatch (with gradients) and its diagnostics."""

    loss: torch.Tensor
    stats: MinibatchStats


def minibatch_loss(
    models: PolicyCritic,
    batch: Rollout,
    advantages: Advantages,
    algo: PPOConfig,
    allowed_token_ids: torch.Tensor | None,
    epoch: int = 0,
    minibatch: int = 0,
    *,
    kl_coef: float = 0.0,
    tokens_per_update: float | None = None,
    shares: ProcessShares | None = None,
) -> MinibatchLoss:
    """``policy loss + vf_coef * value loss - entropy_coef * entropy`` on rollout rows (no value
    loss without a critic; GRPO's policy loss carries its KL term).

    Args:
        models: the networks being trained.
        batch: the minibatch's rows of the rollout (old log-probs and values are constants).
        advantages: advantages (B, T) and, with a critic, returns (B, T) of the same rows.
        algo: clip ranges, loss weights, estimator and loss type.
        allowed_token_ids: (A,) the sampler's token restriction.
        epoch: index of the pass over the rollout (recorded in the stats).
        minibatch: index of the minibatch in that pass (recorded in the stats).
        kl_coef: this iteration's KL coefficient (GRPO's loss term).
        tokens_per_update: the ``loss_type=dapo`` divisor.
        shares: this process's part of the minibatch (None: the whole of it, one process).
    """
    one = torch.tensor(1.0)
    token_share, loss_share = (one, one) if shares is None else shares
    inputs, mask = batch.model_inputs(), batch.response_mask
    policy = models.policy_logps(*inputs, allowed_token_ids, algo.temperature)
    pg = policy_loss(
        policy.logps, batch, advantages.advantages, algo, kl_coef, tokens_per_update
    )
    policy_part = pg.loss * loss_share
    entropy = masked_mean(entropy_from_logits(policy.logits), mask) * token_share
    value_loss = value_clipfrac = None
    if models.has_critic:
        values = models.values(*inputs)
        vf = clipped_value_loss(
            values, batch.values, advantages.returns, mask, algo.clip_range_value
        )
        value_part = vf.loss * token_share
        loss = policy_part + algo.vf_coef * value_part - algo.entropy_coef * entropy
        value_loss, value_clipfrac = value_part.detach(), vf.clipfrac * token_share
    else:
        loss = policy_part - algo.entropy_coef * entropy
    stats = MinibatchStats(
        epoch, minibatch, policy_part.detach(), value_loss, entropy.detach(),
        pg.approxkl * token_share, pg.clipfrac * token_share, value_clipfrac,
        pg.ratio_mean * token_share,
    )
    return MinibatchLoss(loss, stats)


# -------------------------------------------------------------------------------------- module
class PPOModule(EvaluatedModule):
    """PPO-RLHF with a reward model (PPO) or the task's gold reward (PPO-GT), and the same loop
    with a critic-free estimator (RLOO, GRPO, REINFORCE; ``algo.advantage``).

    Args:
        policy_critic: policy, reference and (GAE only) critic in either memory mode (see
            :func:`leash.models.policy_critic.build_policy_critic`).
        reward_fn: scores responses: ``LearnedReward(reward_model)`` or ``GoldTaskReward(task)``.
        algo: the PPO configuration (every field is read).
        pad_token_id: written after EOS in sampled responses.
        eos_token_id: ends a response.
        max_new_tokens: longest response; None uses ``algo.max_new_tokens`` (a built-in task
            passes its own response length limit).
        allowed_token_ids: (A,) restrict the policy to these tokens (a built-in task's words).
        max_grad_norm: clip the gradient norm of every update to this; None does not clip.
        evaluator: the common evaluator, run after every validation epoch.
    """

    def __init__(
        self,
        policy_critic: PolicyCritic,
        reward_fn: RewardFn,
        algo: PPOConfig,
        *,
        pad_token_id: int,
        eos_token_id: int,
        max_new_tokens: int | None = None,
        allowed_token_ids: torch.Tensor | None = None,
        max_grad_norm: float | None = None,
        evaluator: PolicyEvaluator | None = None,
    ) -> None:
        super().__init__(evaluator)
        self.automatic_optimization = False
        self.step_tokens: tuple[int, int] | None = None
        """(tokens, rollouts) of the latest iteration, read by the resource metrics."""
        self.policy_critic = policy_critic
        self.reward_fn = reward_fn
        self.algo = algo
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.max_new_tokens = max_new_tokens or algo.max_new_tokens
        self.max_grad_norm = max_grad_norm
        self.register_buffer("allowed_token_ids", allowed_token_ids, persistent=False)
        self.kl_controller: KLController = (
            AdaptiveKLController(algo.kl_coef, algo.kl_target, algo.kl_horizon)
            if algo.adaptive_kl
            else FixedKLController(algo.kl_coef)
        )
        self.baseline = MovingAverageBaseline(algo.baseline_decay)
        """REINFORCE's moving-average baseline b (read and moved only by that estimator)."""
        self.last_updates: list[MinibatchStats] = []
        """Diagnostics of every minibatch update of the latest iteration, in order."""
        for module in self.roles.values():
            disable_dropout(module)

    @property
    def policy(self) -> torch.nn.Module:
        """The causal LM being trained (what the evaluator samples)."""
        return self.policy_critic.policy

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """The networks held, by role; in shared_lora mode ``policy`` is the one base with both
        adapters (the reference is that base with adapters off) and ``critic`` the value head."""
        roles = dict(self.policy_critic.roles)
        if isinstance(self.reward_fn, torch.nn.Module):
            roles["reward"] = self.reward_fn
        return roles

    @property
    def iteration(self) -> int:
        """Index of the current PPO iteration, derived from the optimizer steps (resume-safe)."""
        return self.global_step // updates_per_step(self.algo)

    def guard_where(self) -> str:
        """The start of a NonFiniteError message on the gradients: iteration and update."""
        return f"PPO iteration {self.iteration} (optimizer step {self.global_step})"

    @property
    def estimator(self) -> AdvantageEstimator:
        """The advantage estimator of the loop (``algo.advantage``)."""
        return AdvantageEstimator(self.algo.advantage)

    def _check_finite(
        self, iteration: int, where: str, **quantities: torch.Tensor | None
    ) -> None:
        """Raise NonFiniteError if any quantity holds NaN/inf on any process (all raise); an
        absent quantity (None: no critic) is skipped."""
        present = {name: value for name, value in quantities.items() if value is not None}
        check_finite(f"PPO iteration {iteration} ({where})", self._sum, **present)

    # --------------------------------------------------------------------------- the loop
    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """One PPO iteration on a batch of prompts (see the module docstring)."""
        iteration, kl_coef = self.iteration, self.kl_controller.value
        with stopwatch(self.device) as generation:
            responses = self.draw(batch)
        with stopwatch(self.device) as scoring:
            rollout = self.measure(responses)
        self._check_finite(
            iteration, "rollout", scores=rollout.scores, logprobs=rollout.logprobs,
            ref_logprobs=rollout.ref_logprobs, values=rollout.values,
        )
        shaped = shape(rollout, self.algo, kl_coef, self._sum)
        advantage = advantages(
            rollout, shaped, self.algo, self._sum, kl_coef=kl_coef, baseline=self.baseline.value
        )
        self._check_finite(
            iteration, self.estimator.value.upper(), advantages=advantage.advantages,
            returns=advantage.returns,
        )
        with stopwatch(self.device) as update:
            self.last_updates = self.update(rollout, advantage, iteration, kl_coef)
        metrics = reduce_metrics(
            {
                **rollout_metrics(rollout, shaped),
                **update_metrics(self.last_updates),
                "kl_coef": torch.tensor(kl_coef),
                **self._baseline_metric(),
            },
            {
                "time/generation_s": generation.seconds,
                "time/scoring_s": scoring.seconds,
                "time/update_s": update.seconds,
                "throughput/generation_tokens_per_s":
                    float(responses.response_mask.sum()) / max(generation.seconds, 1e-9),
            },
            self._sum,
            self.trainer.world_size,
            self.device,
        )
        # The controller sees the k1 sequence KL of the whole batch, every process included.
        self.kl_controller.update(
            float(metrics["train/objective/kl"]), len(rollout) * self.trainer.world_size
        )
        if self.estimator == AdvantageEstimator.reinforce:  # b moves after this batch used it
            self.baseline.update(float(metrics["train/objective/rlhf_reward"]))
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(batch))
        # What this step processed, for the resource metrics: every rollout's prompt + response.
        self.step_tokens = (
            int(responses.prompt_mask.sum() + responses.response_mask.sum()), len(rollout)
        )
        if iteration + 1 >= self.algo.max_steps:
            self.trainer.should_stop = True

    def _baseline_metric(self) -> dict[str, torch.Tensor]:
        """REINFORCE's baseline b of this iteration, logged as ``baseline`` (others: nothing)."""
        if self.estimator != AdvantageEstimator.reinforce:
            return {}
        return {"baseline": torch.tensor(self.baseline.value)}

    def draw(self, batch: PromptBatch) -> Responses:
        """Sample the rollout's responses from the policy."""
        return sample(
            self.policy,
            batch.input_ids,
            batch.attention_mask,
            samples_per_prompt=self.algo.samples_per_prompt,
            max_new_tokens=self.max_new_tokens,
            temperature=self.algo.temperature,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            allowed_token_ids=self.allowed_token_ids,
        )

    def measure(self, responses: Responses) -> Rollout:
        """Log-probs, reference log-probs, values and rewards of the responses (no grad)."""
        return score_rollout(
            self.policy_critic,
            self.reward_fn,
            responses,
            chunk_size=minibatch_size(len(responses), self.algo.num_minibatches),
            temperature=self.algo.temperature,
            allowed_token_ids=self.allowed_token_ids,
        )

    def update(
        self, rollout: Rollout, advantage: Advantages, iteration: int, kl_coef: float = 0.0
    ) -> list[MinibatchStats]:
        """``ppo_epochs`` passes of shuffled minibatch updates, one optimizer step each."""
        optimizer, schedule = self.optimizers(), self.lr_schedulers()
        minibatch_size(len(rollout), self.algo.num_minibatches)  # fails clearly if no exact split
        divisor = None
        if LossType(self.algo.loss_type) == LossType.dapo:
            divisor = tokens_per_update(
                rollout.response_mask, self.algo.num_minibatches, self._sum,
                self.trainer.world_size,
            )
        updates = []
        device = rollout.response_ids.device
        for epoch in range(self.algo.ppo_epochs):
            minibatches = process_minibatches(
                len(rollout), self.algo.num_minibatches, self.algo.samples_per_prompt,
                self.global_rank, self.trainer.world_size, device,
            )
            for index, rows in enumerate(minibatches):
                held = len(rows) > 0
                if not held:  # a stand-in row weighted 0: every process takes every backward
                    rows = torch.zeros(1, dtype=torch.long, device=device)
                returns = None if advantage.returns is None else advantage.returns[rows]
                rows_advantage = Advantages(advantage.advantages[rows], returns)
                batch = rollout.rows(rows)
                step = minibatch_loss(
                    self.policy_critic, batch, rows_advantage, self.algo,
                    self.allowed_token_ids, epoch, index, kl_coef=kl_coef,
                    tokens_per_update=divisor, shares=self.shares(batch.response_mask, held),
                )
                self._check_finite(
                    iteration, f"epoch {epoch}, minibatch {index}", loss=step.loss,
                    policy_loss=step.stats.policy_loss, value_loss=step.stats.value_loss,
                )
                optimizer.zero_grad()
                self.manual_backward(step.loss)
                if self.max_grad_norm is not None:
                    self.clip_gradients(optimizer, gradient_clip_val=self.max_grad_norm,
                                        gradient_clip_algorithm="norm")
                optimizer.step()
                schedule.step()
                updates.append(step.stats)
        return updates

    def shares(self, mask: torch.Tensor, held: bool) -> ProcessShares:
        """This process's shares of a minibatch's tokens and rows (0 for a stand-in row)."""
        real = (mask > 0).sum()
        counts = torch.stack([real, torch.full_like(real, len(mask))]).float() * float(held)
        tokens, rows = self.share_of_processes(counts)
        loss = {LossType.bnpo: tokens, LossType.grpo: rows}.get(
            LossType(self.algo.loss_type), torch.tensor(float(held), device=self.device)
        )
        return ProcessShares(tokens, loss)

    # ------------------------------------------------------------------- lightning hooks
    def validation_step(self, batch: PreferenceBatch | PromptBatch, batch_idx: int) -> None:
        """Record the policy's implicit rewards (``beta = algo.kl_coef``) of held-out pairs; an
        SFT corpus, which has none, validates on prompts: nothing to score."""
        if isinstance(batch, PreferenceBatch):
            rewards = implicit_rewards(
                self.policy_critic, batch, self.algo.kl_coef, self.allowed_token_ids
            )
            self.record_heldout_pairs(rewards.chosen, rewards.rejected, batch)

    def train(self, mode: bool = True) -> PPOModule:
        """Switch the trained networks' mode; frozen ones stay in eval mode."""
        super().train(mode)
        self.policy_critic.train(mode)  # its override keeps the reference in eval mode
        if isinstance(self.reward_fn, torch.nn.Module):
            self.reward_fn.train(mode)  # LearnedReward keeps its model in eval mode
        return self

    def configure_optimizers(self) -> dict[str, Any]:
        """One AdamW, a param group per network (policy at ``lr``, critic at ``critic_lr``; no
        critic group without a critic), and a per-step schedule over :func:`optimizer_steps`."""
        policy_params, critic_params = self.policy_critic.parameter_groups()
        critic = critic_params if self.policy_critic.has_critic else None
        groups = policy_critic_groups(policy_params, critic, self.algo)
        return adamw_with_schedule(groups, self.algo)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the (possibly adapted) KL coefficient, and REINFORCE's baseline, with the
        weights."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["ppo_kl_coef"] = self.kl_controller.value
        if self.estimator == AdvantageEstimator.reinforce:
            checkpoint["ppo_reward_baseline"] = self.baseline.value

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume with the KL coefficient (and REINFORCE baseline) the run had reached."""
        super().on_load_checkpoint(checkpoint)
        self.kl_controller.value = float(checkpoint["ppo_kl_coef"])
        if self.estimator == AdvantageEstimator.reinforce:
            self.baseline.value = float(checkpoint["ppo_reward_baseline"])
