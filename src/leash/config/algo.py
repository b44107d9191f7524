"""Schema of the `algo` group (one dataclass per algorithm family) and its derived sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from leash.config.enums import (
    AdvantageEstimator,
    CriticInit,
    DPOLoss,
    KLEstimator,
    LossType,
    MemoryMode,
    OnlineSchedule,
    ReferenceMode,
    ReferenceUpdate,
    RewardSource,
    Scheduler,
)
from leash.config.fields import fraction, non_negative, positive


@dataclass
class AlgoConfig:
    """Fields every algorithm has: its name, AdamW, the learning-rate schedule, the step budget."""

    name: str = MISSING
    """Algorithm name: `sft`, `dpo`, `reward`, `ppo`, ..."""
    lr: float = positive(1e-3)
    """Peak learning rate."""
    weight_decay: float = non_negative(0.0)
    """Decoupled (AdamW) weight decay."""
    adam_betas: tuple[float, float] = field(
        default=(0.9, 0.999), metadata={"length": 2, "ge": 0, "lt": 1}
    )
    """Adam moment decay rates: two values in [0, 1)."""
    warmup_steps: int = non_negative(0)
    """Linear warmup from 0 to `lr` over this many optimizer steps."""
    scheduler: Scheduler = Scheduler.cosine
    """Decay after warmup, down to `min_lr_ratio * lr` at `max_steps`."""
    min_lr_ratio: float = field(default=0.1, metadata={"ge": 0, "le": 1})
    """Final learning rate as a fraction of the peak (cosine and linear)."""
    max_steps: int = positive(200)
    """Training steps of this algorithm: optimizer steps, or PPO iterations."""
    max_grad_norm: float | None = field(default=1.0, metadata={"gt": 0})
    """Clip the gradient norm at this value before each optimizer step; None disables."""


@dataclass
class SFTConfig(AlgoConfig):
    """Causal-LM loss on responses, prompt tokens masked."""

    name: str = "sft"


@dataclass
class DPOConfig(AlgoConfig):
    """The DPO family: one loss on preference pairs against a reference policy."""

    name: str = "dpo"
    loss: DPOLoss = DPOLoss.sigmoid
    """Which loss of the family: sigmoid (DPO), robust, ipo, hinge (SLiC), simpo."""
    beta: float = positive(0.1)
    """Inverse temperature of the implicit reward `beta · log pi/pi_ref` (the KL leash)."""
    label_smoothing: float = field(default=0.0, metadata={"ge": 0, "lt": 0.5})
    """Assumed label-flip rate for cDPO (sigmoid) and robust DPO; 0 disables."""
    simpo_gamma: float = non_negative(0.5)
    """SimPO target reward margin."""
    reference: ReferenceMode = ReferenceMode.copy
    """Reference policy: frozen `copy`, PEFT `adapter` disabled, or `precomputed` log-probs."""


@dataclass
class RewardConfig(AlgoConfig):
    """Bradley-Terry reward model on the same preference pairs."""

    name: str = "reward"
    margin: float = non_negative(0.0)
    """Margin inside the Bradley-Terry sigmoid: `-log sigma(r_c - r_r - margin)`."""
    center_coef: float = non_negative(0.0)
    """Weight of the `(r_c + r_r)^2` penalty that centres rewards at zero."""


@dataclass
class PPOConfig(AlgoConfig):
    """The online loop: on-policy rollouts scored by a reward model, under a KL leash.

    `max_steps` counts iterations: a rollout batch of `data.batch_size` prompts x
    `samples_per_prompt`, then `ppo_epochs` passes of `num_minibatches` clipped updates; the
    Trainer counts the updates (see :func:`optimizer_steps`). `lr` is the policy's learning rate.
    `advantage` picks the estimator: PPO's GAE with a critic, or a critic-free one (RLOO, GRPO,
    REINFORCE), which loads no critic and ignores the critic's fields (`critic_init`,
    `critic_lr`, `vf_coef`, `clip_range_value`, `gamma`, `lam`).
    """

    name: str = "ppo"
    advantage: AdvantageEstimator = AdvantageEstimator.gae
    """Advantage estimator: `gae` (critic), or critic-free `rloo`, `grpo`, `reinforce`."""
    reward: RewardSource = RewardSource.learned
    """Score rollouts with the `learned` reward model (PPO), the task's `gold` reward (PPO-GT),
    or the `judge` of synthetic-gold mode (`data.relabel_with`, the gold reward of real data)."""
    critic_init: CriticInit = CriticInit.reward
    """Initialise the critic from the reward model or from the policy (SFT) weights."""
    critic_lr: float = positive(1e-3)
    """Critic learning rate."""
    memory_mode: MemoryMode = MemoryMode.separate
    """`separate` models, or one frozen base with LoRA adapters for policy and critic."""
    samples_per_prompt: int = positive(1)
    """Responses sampled per prompt in a rollout."""
    ppo_epochs: int = positive(4)
    """Passes over each rollout batch."""
    num_minibatches: int = positive(4)
    """Minibatches per pass (the rollout batch must divide exactly)."""
    clip_range: float = positive(0.2)
    """Policy ratio clip epsilon."""
    clip_range_value: float = positive(0.2)
    """Value clip epsilon around the rollout's values."""
    vf_coef: float = positive(0.1)
    """Value-loss weight (shared_lora mode, where policy and critic share one optimizer)."""
    gamma: float = field(default=1.0, metadata={"ge": 0, "le": 1})
    """Discount."""
    lam: float = field(default=0.95, metadata={"ge": 0, "le": 1})
    """GAE lambda."""
    kl_coef: float = non_negative(0.05)
    """Initial (or fixed) coefficient of the per-token KL penalty."""
    kl_estimator: KLEstimator = KLEstimator.k1
    """Per-token KL estimator in the reward: k1 (unbiased, can be negative) or k3 (>= 0)."""
    adaptive_kl: bool = False
    """Adapt the KL coefficient towards `kl_target` (Ziegler et al. 2019)."""
    kl_target: float = positive(6.0)
    """Target sequence KL of the adaptive controller."""
    kl_horizon: int = positive(10000)
    """Horizon of the adaptive controller, in rollouts."""
    whiten_rewards: bool = False
    """Whiten shaped rewards over the rollout batch (across processes)."""
    whiten_advantages: bool = True
    """Whiten advantages over the rollout batch (across processes)."""
    missing_eos_penalty: float | None = 1.0
    """Subtracted once from the score of a response cut without EOS; None disables."""
    entropy_coef: float = non_negative(0.0)
    """Entropy bonus weight."""
    temperature: float = positive(1.0)
    """Rollout sampling temperature."""
    max_new_tokens: int = positive(64)
    """Longest rollout response (a built-in task uses its own response length limit)."""
    baseline_decay: float = fraction(0.9)
    """`reinforce`: b <- decay * b + (1 - decay) * batch mean reward, from b = 0 (in [0, 1))."""
    loss_type: LossType = LossType.bnpo
    """Policy-loss average over tokens: `bnpo` (PPO's), `dapo` (TRL GRPO's default) or `grpo`."""


@dataclass
class OnlineDPOConfig(DPOConfig):
    """On-policy and iterative DPO: the DPO family's loss on pairs sampled from the current policy.

    Every pair is two responses to one prompt, sampled from the policy at `temperature` and
    ordered by `reward` (a tie is skipped and counted). `schedule=online`: each step samples
    the pairs of its own batch of prompts and takes one optimizer step on them (a round of one
    batch and one step). `schedule=iterative`: `rounds` rounds, each sampling a preference set
    over every training prompt, then `steps_per_round` optimizer steps on it (each step trains
    the pairs of its batch's prompts); `max_steps` is derived, rounds x steps_per_round, and a
    lower value ends the run early (`debug=fast`). The loss fields are DPO's, and so is
    `reference` (`precomputed` cannot hold for pairs sampled during training).
    """

    name: str = "online_dpo"
    reward: RewardSource = RewardSource.learned
    """Label pairs with the `learned` reward model (trained on the same pairs), the `gold`
    reward of a built-in task, or the `judge` of synthetic-gold mode (`data.relabel_with`)."""
    schedule: OnlineSchedule = OnlineSchedule.online
    """`online`: new pairs every step from its batch; `iterative`: a preference set per round."""
    rounds: int | None = positive(None)
    """Rounds of `schedule=iterative` (None for `online`, whose round is one step)."""
    steps_per_round: int = positive(1)
    """Optimizer steps on each round's preference set (1 for `online`)."""
    reference_update: ReferenceUpdate = ReferenceUpdate.fixed
    """`fixed`: the reference is the SFT policy; `last_round`: each round starts with the
    reference set to the policy (`schedule=iterative`, a frozen `copy` without peft)."""
    temperature: float = positive(1.0)
    """Sampling temperature of the pairs (the loss reads the policy itself, temperature 1)."""
    max_new_tokens: int = positive(64)
    """Longest sampled response (a built-in task uses its own response length limit)."""
    sample_batch_size: int = positive(64)
    """Prompts per generation call when an iterative round samples every training prompt."""
    missing_eos_penalty: float | None = 1.0
    """Subtracted from the score of a sampled response cut without EOS before the pair is
    ordered (PPO's penalty, so both loops rank responses by the same reward); None disables."""


ALGO_SCHEMAS: dict[str, type[AlgoConfig]] = {
    "sft": SFTConfig,
    "reward": RewardConfig,
    # The DPO family: one schema, the variant chosen by `loss` (and its name in reports).
    "dpo": DPOConfig,
    "cdpo": DPOConfig,
    "robust_dpo": DPOConfig,
    "ipo": DPOConfig,
    "slic": DPOConfig,
    "simpo": DPOConfig,
    # PPO with the learned reward model, and PPO-GT with the task's gold reward.
    "ppo": PPOConfig,
    "ppo_gt": PPOConfig,
    # The same loop with a critic-free estimator (conf/algo/<name>.yaml sets `advantage`).
    "rloo": PPOConfig,
    "grpo": PPOConfig,
    "reinforce": PPOConfig,
    # DPO on pairs sampled from the current policy: every step, or a preference set per round.
    "online_dpo": OnlineDPOConfig,
    "iterative_dpo": OnlineDPOConfig,
}


def needs_critic(algo: Any) -> bool:
    """Whether the online loop's estimator learns a value function (GAE does; RLOO, GRPO and
    REINFORCE do not). ``algo`` is a typed PPOConfig or a DictConfig."""
    return AdvantageEstimator(algo.advantage) == AdvantageEstimator.gae


def exact_div(numerator: int, denominator: int, what: str) -> int:
    """``numerator / denominator`` when it is an integer; otherwise fail, explaining ``what``."""
    if denominator <= 0 or numerator % denominator:
        raise ValueError(f"{what}: {numerator} does not split exactly into {denominator}")
    return numerator // denominator


def updates_per_step(algo: Any) -> int:
    """Optimizer steps in one training step: a PPO iteration updates ``ppo_epochs x
    num_minibatches`` times, every other algorithm once. ``algo`` is typed or a DictConfig."""
    if ALGO_SCHEMAS.get(algo.name) is PPOConfig:
        return algo.ppo_epochs * algo.num_minibatches
    return 1


def optimizer_steps(algo: Any, iterations: int | None = None) -> int:
    """Optimizer steps in ``iterations`` training steps (default: the run's ``max_steps``): the
    Trainer's ``max_steps`` and the length of the learning-rate schedule."""
    return (algo.max_steps if iterations is None else iterations) * updates_per_step(algo)


def round_steps(rounds: int | None, steps_per_round: int) -> int:
    """Optimizer steps of an iterative DPO schedule: ``rounds x steps_per_round`` (its
    ``max_steps``, derived in conf/algo/iterative_dpo.yaml)."""
    if rounds is None:
        raise ValueError("algo.rounds: schedule=iterative needs a number of rounds (>= 1)")
    return rounds * steps_per_round


def checkpoint_steps(algo: Any, every: int | None) -> int:
    """Optimizer steps between checkpoints: every ``every`` training steps, by default a fifth
    of the run (several checkpoints for any run length, PPO's 60 iterations included)."""
    return optimizer_steps(algo, every if every is not None else max(1, algo.max_steps // 5))


def lightning_clip(algo: Any) -> float | None:
    """The Trainer's `gradient_clip_val`: the algorithm's norm, except for manual optimisation
    (PPO clips inside its own update, where Lightning's clipping is not allowed)."""
    return None if ALGO_SCHEMAS.get(algo.name) is PPOConfig else algo.max_grad_norm
