"""On-policy and iterative DPO: the DPO family's loss on pairs the current policy samples.

Every pair is two responses to one prompt, sampled from the policy being trained with the PPO
rollout sampler, scored by the run's reward (the learned reward model, a built-in task's gold
reward, or on real data the judge of synthetic-gold mode), less ``algo.missing_eos_penalty``
for a response cut without EOS (as PPO's), and ordered by that score
(:func:`leash.rollout.pairs.label_pairs`; a tie is no pair, and is counted). The loss is
:class:`~leash.modules.dpo.DPOModule`'s, computed the same way on the same layout (one
concatenated forward, :func:`leash.losses.preference.preference_loss` with ``algo.loss``,
``beta``, ``label_smoothing``, ...), so ``train/loss``, ``rewards/*`` and ``logps/*`` mean what
they mean for DPO.

One module, two schedules (``algo.schedule``), because the two methods differ only in *when*
pairs are sampled. A **round** samples a preference set from the policy as it is at the round's
start, then trains ``steps_per_round`` optimizer steps on it; each step trains the pairs of the
prompts of its own training batch (the shared data module's ``prompts`` view, shuffled and
resumable exactly as for PPO).

- ``online``: a round is one batch and one step: each step samples the pairs of its batch's
  prompts and takes one step on them (on-policy DPO).
- ``iterative``: ``rounds`` rounds; each samples two responses for *every* training prompt
  (``sample_batch_size`` prompts per generation call), then ``steps_per_round`` steps cover
  batches of that set (several passes when there are more steps than batches). With
  ``reference_update=last_round`` every round after the first starts by loading the policy's
  weights into the frozen reference, so each round's loss starts at ln 2.

Two modules would repeat sampling, labelling, the loss, logging and checkpoints; with one, the
online method is the iterative one at a round length of one step, and a test says so.

Reference: the SFT policy, a frozen copy or (``peft=lora``) the adapter-disabled base, as for
DPO; SimPO reads none. The evaluator always measures the KL to the SFT policy (the recipe hands
it one that does not move). Sampling runs at ``algo.temperature``; the loss reads the policy
itself (temperature 1), the distribution the evaluator measures.

Steps: automatic optimisation, one optimizer step per training step, so ``global_step`` counts
steps and a step's round is ``global_step // steps_per_round``. A step with no untied pair
still steps (every process must, under DDP) with a zero loss: zero gradients, although AdamW's
moments and weight decay still move the weights a little; ``pairs/trained`` says 0. Under DDP
the loss is the mean over every process's pairs (processes tie different numbers of pairs), so
two processes train what one process given both halves trains.

Resume: :class:`~leash.callbacks.resume.ResumeCheckpoint` saves between steps with the random
number generators, which sampling draws from, so a resumed run samples what the uninterrupted
one did. An iterative round's preference set and statistics travel in the checkpoint, and a
moved reference is in the weights, so a run resumed mid-round trains on the same set.

Validation is DPO's, on the held-out pairs of the shared data (its ``prompts`` view validates
on them): ``val/loss``, ``val/rewards/*``, ``val/logps/*`` and the implicit reward model
``eval/implicit_rm_*`` against the module's reference (with ``reference_update=last_round``,
the latest round's: the reward that round's loss trained).

Metrics, beside DPO's (over the step's untied pairs): ``train/objective/scores`` (mean
penalised score of the round's sampled responses, PPO's name), ``train/pairs/ties``,
``train/pairs/tie_fraction`` (ties per prompt), ``train/pairs/trained`` (pairs in this step),
``train/round``, and, on the steps that sample, ``time/generation_s``, ``time/scoring_s`` and
``throughput/generation_tokens_per_s``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from leash.config import OnlineDPOConfig, OnlineSchedule, ReferenceUpdate
from leash.data.types import PreferenceBatch, PromptBatch
from leash.evaluation.evaluator import PolicyEvaluator
from leash.losses.ppo import penalise_missing_eos
from leash.models.reference import FrozenCopy, Reference
from leash.modules.dpo import DPOModule
from leash.modules.guard import check_finite
from leash.modules.ppo_stats import stopwatch
from leash.rollout.pairs import concatenate_pairs, label_pairs, pair_batch, select_prompts
from leash.rollout.rewards import RewardFn
from leash.rollout.rollout import sample, score

ROUND_KEY = "online_dpo_round"
"""Checkpoint entry holding an iterative round's preference set and statistics."""


class Sampled(NamedTuple):
    """The pairs of some prompts and what sampling them measured."""

    pairs: PreferenceBatch
    """The untied pairs."""
    scores: torch.Tensor
    """(2N,) score of every sampled response."""
    ties: int
    """Prompts whose two responses scored the same (no pair)."""
    tokens: int
    """Response tokens generated (EOS included)."""
    generation_s: float
    scoring_s: float


def round_statistics(parts: list[Sampled]) -> dict[str, float]:
    """What a round's sampling measured, over all its parts (chunks of prompts)."""
    scores = torch.cat([part.scores for part in parts])
    ties = sum(part.ties for part in parts)
    generation_s = sum(part.generation_s for part in parts)
    return {
        "objective/scores": float(scores.mean()),
        "pairs/ties": float(ties),
        "pairs/tie_fraction": 2 * ties / len(scores),
        "time/generation_s": generation_s,
        "time/scoring_s": sum(part.scoring_s for part in parts),
        "throughput/generation_tokens_per_s":
            sum(part.tokens for part in parts) / max(generation_s, 1e-9),
    }


TIMING = ("time/generation_s", "time/scoring_s", "throughput/generation_tokens_per_s")
"""Statistics logged only on the steps that sample (without the ``train/`` prefix)."""


class OnlineDPOModule(DPOModule):
    """DPO-family steps on pairs sampled from the current policy (see the module docstring).

    Args:
        policy: the causal LM trained and sampled (a PEFT model for ``algo.reference=adapter``).
        reference: π_ref (:func:`leash.models.reference.build_reference`); a
            :class:`~leash.models.reference.FrozenCopy` for ``reference_update=last_round``.
        reward_fn: orders each pair: ``LearnedReward(reward_model)``, ``GoldTaskReward(task)``
            or ``JudgeReward(judge, tokenizer)``.
        algo: the loss, the schedule, the sampling settings.
        pad_token_id: pads responses and pairs.
        eos_token_id: ends a response.
        max_new_tokens: longest response; None uses ``algo.max_new_tokens``.
        allowed_token_ids: (A,) the policy's support on a built-in task (sampling and loss).
        round_prompts: every training prompt, left padded (``schedule=iterative`` samples them
            each round); None for ``online``.
        evaluator: the common evaluator, run after every validation epoch.
    """

    def __init__(
        self,
        policy: torch.nn.Module,
        reference: Reference,
        reward_fn: RewardFn,
        algo: OnlineDPOConfig,
        *,
        pad_token_id: int,
        eos_token_id: int,
        max_new_tokens: int | None = None,
        allowed_token_ids: torch.Tensor | None = None,
        round_prompts: PromptBatch | None = None,
        evaluator: PolicyEvaluator | None = None,
    ) -> None:
        super().__init__(policy, reference, algo, allowed_token_ids, evaluator)
        if self.iterative and round_prompts is None:
            raise ValueError("algo.schedule=iterative samples every training prompt each "
                             "round: pass round_prompts")
        if self.moves_reference and not isinstance(reference, FrozenCopy):
            raise ValueError("algo.reference_update=last_round needs a frozen copy reference")
        self.reward_fn = reward_fn
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id
        self.max_new_tokens = max_new_tokens or algo.max_new_tokens
        self.round_prompts = round_prompts
        self.step_tokens: tuple[int, int] | None = None
        """(tokens, pairs) the latest step trained on, read by the resource metrics."""
        self._round = -1
        """The round whose pairs are held (-1: none yet)."""
        self._pairs: PreferenceBatch | None = None
        self._round_stats: dict[str, float] = {}

    @property
    def roles(self) -> dict[str, torch.nn.Module]:
        """DPO's roles, and the reward model when the reward is learned."""
        roles = super().roles
        reward = getattr(self, "reward_fn", None)  # not yet set while DPOModule.__init__ runs
        if isinstance(reward, torch.nn.Module):
            roles["reward"] = reward
        return roles

    @property
    def iterative(self) -> bool:
        """Whether a round samples every training prompt (else: its step's batch)."""
        return OnlineSchedule(self.algo.schedule) == OnlineSchedule.iterative

    @property
    def moves_reference(self) -> bool:
        """Whether each round after the first sets the reference to the policy."""
        return ReferenceUpdate(self.algo.reference_update) == ReferenceUpdate.last_round

    @property
    def round(self) -> int:
        """The round of the current step, from the optimizer steps (resume-safe)."""
        return self.global_step // self.algo.steps_per_round

    # --------------------------------------------------------------------------- the step
    def training_step(self, batch: PromptBatch, batch_idx: int) -> torch.Tensor:
        """Pairs of this step (sampled now, or picked from the round's set) -> DPO loss."""
        sampled_now = self.round != self._round
        if sampled_now:
            self.start_round(batch)
        pairs = self._pairs if not self.iterative else select_prompts(self._pairs, batch.index)
        pairs = pairs.to(self.device)
        self._log_round(len(pairs), sampled_now, len(batch))
        self.step_tokens = (
            int(pairs.chosen_attention_mask.sum() + pairs.rejected_attention_mask.sum()),
            len(pairs),
        )
        share = self.share_of_processes(len(pairs))  # every process, before any returns
        if len(pairs) == 0:  # every prompt tied: a step with zero gradients (module docstring)
            return sum(p.sum() for p in self.policy.parameters() if p.requires_grad) * 0.0
        step = self.compute(pairs)
        self._log_step(step, len(pairs))
        return step.losses.mean() * share  # the mean over every process's pairs

    def start_round(self, batch: PromptBatch) -> None:
        """Move the reference if asked, then sample and label this round's pairs: those of the
        step's batch (online) or of every training prompt (iterative)."""
        if self.round > 0 and self.moves_reference:
            self.reference.follow(self.policy)
        if not self.iterative:
            parts = [self._sample(batch.input_ids, batch.attention_mask, batch.index)]
        else:
            prompts = self.round_prompts.to(self.device)
            size = self.algo.sample_batch_size
            parts = [
                self._sample(prompts.input_ids[start:start + size],
                             prompts.attention_mask[start:start + size],
                             prompts.index[start:start + size])
                for start in range(0, len(prompts), size)
            ]
        self._pairs = concatenate_pairs([part.pairs for part in parts], self.pad_token_id)
        self._round_stats = round_statistics(parts)
        self._round = self.round

    def _sample(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, prompt_index: torch.Tensor
    ) -> Sampled:
        """Two responses per prompt from the policy, scored, labelled, laid out as pairs."""
        with stopwatch(self.device) as generation:
            responses = sample(
                self.policy, prompt_ids, prompt_mask, samples_per_prompt=2,
                max_new_tokens=self.max_new_tokens, temperature=self.algo.temperature,
                eos_token_id=self.eos_token_id, pad_token_id=self.pad_token_id,
                allowed_token_ids=self.allowed_token_ids,
            )
        with stopwatch(self.device) as scoring:
            scores = penalise_missing_eos(
                score(self.reward_fn, responses), responses.eos_found,
                self.algo.missing_eos_penalty,
            )
        check_finite(f"{self.guard_where()} (sampled pairs)", self._sum, scores=scores)
        labels = label_pairs(scores)
        pairs = pair_batch(responses, labels, prompt_index, self.pad_token_id)
        return Sampled(pairs, scores, labels.ties, int(responses.response_mask.sum()),
                       generation.seconds, scoring.seconds)

    def _log_round(self, trained: int, sampled_now: bool, batch_size: int) -> None:
        """The round's sampling statistics (timing only on the step that sampled)."""
        metrics = {
            f"train/{name}": value for name, value in self._round_stats.items()
            if name not in TIMING
        }
        metrics |= {"train/pairs/trained": float(trained), "train/round": float(self._round)}
        if sampled_now:
            metrics |= {name: self._round_stats[name] for name in TIMING}
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=batch_size)

    # ------------------------------------------------------------------- lightning hooks
    def validation_step(self, batch: PreferenceBatch | PromptBatch, batch_idx: int) -> None:
        """DPO's validation on the held-out pairs (``val/*`` and the implicit reward model); an
        SFT corpus, which has none, validates on prompts: nothing to score."""
        if isinstance(batch, PreferenceBatch):
            super().validation_step(batch, batch_idx)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep an iterative round's preference set and statistics with the weights."""
        super().on_save_checkpoint(checkpoint)
        if self.iterative and self._pairs is not None:
            pairs = {name: None if value is None else value.cpu()
                     for name, value in vars(self._pairs).items()}
            checkpoint[ROUND_KEY] = {
                "round": self._round, "pairs": pairs, "stats": dict(self._round_stats)
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume an iterative round on the set it sampled."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get(ROUND_KEY)
        if state is not None:
            self._round = int(state["round"])
            self._pairs = PreferenceBatch(**state["pairs"])
            self._round_stats = dict(state["stats"])
