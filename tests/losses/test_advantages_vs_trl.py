"""Cross-check the critic-free estimators and GRPO's loss against TRL 1.16's own code.

TRL computes RLOO's and GRPO's advantages inline, in ``_generate_and_score_completions`` of
``RLOOTrainer`` and ``GRPOTrainer``, and GRPO's loss in ``GRPOTrainer._compute_loss``. Those
methods are called unbound on a trainer made with ``object.__new__`` (no ``__init__``: no
model, no data set), whose attributes are set by hand to TRL's defaults for a one-process run.
The three methods they call for model work are replaced on the instance by stand-ins that
return OUR tensors: ``_generate`` (the completions, whose lengths give TRL's completion mask),
``_get_per_token_logps_and_entropies`` (policy or reference log-probs, by the model passed)
and ``_calculate_rewards`` (the scores). The accelerator is a one-process stand-in (device,
rank 0 of 1, identity ``reduce``/``gather``); TRL's module-level ``gather`` helpers run for
real. Everything else, the formulas included, is TRL's code.

Layout: the ``k`` samples of a prompt are adjacent rows, both in TRL (``RepeatSampler`` and
``view(-1, num_generations)``) and in leash (``sample`` repeats each prompt with
``repeat_interleave``), so the same tensors mean the same groups on both sides.

What is not compared, because the two differ on purpose:
- leash's ``whiten_advantages`` whitens over tokens (mean and Bessel variance of every real
  token, eps 1e-8 under the square root), TRL's RLOO ``normalize_advantages`` over sequences
  (eps 1e-4 added to the std); the presets leave both off, as TRL's default does.
- TRL's RLOO loss uses a sequence-level ratio (summed log-probs); leash's RLOO runs PPO's
  per-token clipped surrogate with the advantage on every token. Only RLOO's advantages are
  compared.
"""

from __future__ import annotations

import warnings
from collections import defaultdict, deque
from types import SimpleNamespace

import pytest
import torch

from leash.losses.advantages import (
    grpo_advantages,
    per_token,
    rloo_advantages,
    sequence_rewards,
)
from leash.losses.grpo import grpo_loss
from leash.losses.kl import kl_k1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from trl import GRPOTrainer, RLOOTrainer

ATOL = 1e-6
PROMPTS, K, WIDTH = 3, 3, 5
"""Three prompts, three samples each (adjacent), responses up to five tokens."""
LENGTHS = [5, 2, 4, 1, 5, 3, 2, 2, 5]


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    """Scores, per-token log-probs (junk on padding) and the mask of nine responses."""
    generator = torch.Generator().manual_seed(seed)
    rows = PROMPTS * K
    mask = (torch.arange(WIDTH) < torch.tensor(LENGTHS)[:, None]).long()
    logp = -torch.rand(rows, WIDTH, generator=generator) * 3
    ref = logp + 0.4 * torch.randn(rows, WIDTH, generator=generator)
    old = logp + 0.3 * torch.randn(rows, WIDTH, generator=generator)  # some ratios clip
    scores = torch.randn(rows, generator=generator) * 2
    scores[3:6] = 0.75  # one group of equal scores (GRPO: std 0)
    return {"scores": scores, "logp": logp, "ref": ref, "old": old, "mask": mask}


def _accelerator() -> SimpleNamespace:
    """One process: what TRL reads of its Accelerator in these methods."""
    return SimpleNamespace(
        device=torch.device("cpu"), process_index=0, num_processes=1,
        reduce=lambda tensor, reduction="sum": tensor, gather=lambda tensor: tensor,
    )


def _trainer(cls: type, data: dict[str, torch.Tensor], beta: float, **attributes):
    """A TRL trainer without ``__init__``: TRL's defaults by hand, our tensors behind the
    three model-facing methods."""
    trainer = object.__new__(cls)
    policy = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    reference = SimpleNamespace()
    rows = len(data["scores"])
    values = {
        "accelerator": _accelerator(), "model": policy, "ref_model": reference,
        "_tokenizer": SimpleNamespace(pad_token_id=0), "pad_to_multiple_of": None,
        "mask_truncated_completions": False, "beta": beta, "num_generations": K,
        "reward_weights": torch.ones(1), "reward_clip_range": None, "reward_func_names": ["r"],
        "_metrics": {"train": defaultdict(list)}, "_pending_extra_logs": {},
        "_pending_metrics": {},
        "_logs": {"prompt": deque(), "completion": deque(), "rewards": defaultdict(deque),
                  "advantages": deque(), "extra": defaultdict(deque)},
        "args": SimpleNamespace(
            per_device_train_batch_size=rows, gradient_checkpointing_kwargs=None,
            steps_per_generation=1, gradient_accumulation_steps=1,
        ),
    }
    for name, value in {**values, **attributes}.items():
        setattr(trainer, name, value)

    def logps_of(model, *args, **kwargs):
        logps = data["logp"] if model is policy else data["ref"]
        return logps.clone(), None, None

    trainer._get_per_token_logps_and_entropies = logps_of
    trainer._calculate_rewards = lambda *args: data["scores"][:, None].clone()
    return trainer


def _completions() -> list[list[int]]:
    """Token ids whose lengths are LENGTHS (TRL builds its completion mask from them)."""
    return [[1] * length for length in LENGTHS]


def _prompts() -> list[dict[str, str]]:
    return [{"prompt": f"prompt {row // K}"} for row in range(PROMPTS * K)]


# ------------------------------------------------------------------------------------ RLOO
@pytest.mark.parametrize("beta", [0.0, 0.05, 0.3])
def test_rloo_advantages_match_trl_rloo_trainer(beta: float) -> None:
    data = _tensors()
    trainer = _trainer(RLOOTrainer, data, beta, normalize_advantages=False)
    rows = len(LENGTHS)
    trainer._generate = lambda prompts: ([[5]] * rows, _completions(), ["text"] * rows)
    out = RLOOTrainer._generate_and_score_completions(trainer, _prompts())
    assert torch.equal(out["completion_mask"], data["mask"])  # same tokens on both sides
    # TRL's RLOO puts k1 (logp - ref) in the reward, summed per sequence.
    kl = kl_k1(data["logp"], data["ref"])
    ours = rloo_advantages(sequence_rewards(data["scores"], kl, data["mask"], beta), K)
    torch.testing.assert_close(ours, out["advantages"], atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------ GRPO
GRPO_DEFAULTS = {
    "environment_factories": None, "tools": None, "environments": None, "num_iterations": 1,
    "use_vllm": False, "vllm_importance_sampling_correction": False,
    "multi_objective_aggregation": "sum_then_normalize", "scale_rewards": "group",
    "reward_funcs": [None],
}
"""GRPOConfig's defaults for the attributes ``_generate_and_score_completions`` reads."""


def _trl_grpo_batch(data: dict[str, torch.Tensor], beta: float) -> dict[str, torch.Tensor]:
    trainer = _trainer(GRPOTrainer, data, beta, **GRPO_DEFAULTS)
    rows = len(LENGTHS)
    trainer._generate = lambda prompts: (
        [[5]] * rows, _completions(), None, ["text"] * rows, None, None, None, None
    )
    return GRPOTrainer._generate_and_score_completions(trainer, _prompts())


def test_grpo_advantages_match_trl_grpo_trainer() -> None:
    data = _tensors()
    out = _trl_grpo_batch(data, beta=0.04)
    assert torch.equal(out["completion_mask"], data["mask"])
    ours = grpo_advantages(data["scores"], K)
    torch.testing.assert_close(ours, out["advantages"], atol=ATOL, rtol=0)
    assert ours[3:6].abs().max() == 0  # the group of equal scores


LOSS_DEFAULTS = {
    "top_entropy_quantile": 1.0, "off_policy_mask_threshold": None,
    "importance_sampling_level": "token", "epsilon_low": 0.2, "epsilon_high": 0.2,
    "use_vllm": False, "vllm_importance_sampling_correction": False,
    "current_gradient_accumulation_steps": 1, "_entropy_bonus_enabled": False,
    "aux_loss_enabled": False, "max_completion_length": WIDTH,
}
"""GRPOConfig's defaults for the attributes ``_compute_loss`` reads (epsilon 0.2)."""


@pytest.mark.parametrize("loss_type", ["dapo", "bnpo", "grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_and_gradient_match_trl_compute_loss(loss_type: str, beta: float) -> None:
    data = _tensors(seed=1)
    batch = _trl_grpo_batch(data, beta)  # TRL's own advantages, mask and token count
    batch["old_per_token_logps"] = data["old"]
    batch["ref_per_token_logps"] = data["ref"]
    trl_logp = data["logp"].clone().requires_grad_()
    trainer = _trainer(GRPOTrainer, data, beta, loss_type=loss_type, **LOSS_DEFAULTS)
    trainer.args.use_bias_correction_kl = False
    trainer.args.delta = None
    trainer._get_per_token_logps_and_entropies = (
        lambda *args, **kwargs: (trl_logp, torch.zeros_like(trl_logp), None)
    )
    trl_loss = GRPOTrainer._compute_loss(trainer, trainer.model, batch)
    trl_loss.backward()

    ours_logp = data["logp"].clone().requires_grad_()
    mask = data["mask"]
    ours = grpo_loss(
        ours_logp, data["old"], data["ref"], per_token(grpo_advantages(data["scores"], K), mask),
        mask, 0.2, beta, loss_type, tokens_per_update=float(mask.sum()),  # 1 update, 1 process
    )
    ours.loss.backward()
    torch.testing.assert_close(ours.loss, trl_loss, atol=ATOL, rtol=0)
    # TRL's per-token gradient is 0 on padding only through the mask; compare real tokens.
    real = mask > 0
    torch.testing.assert_close(ours_logp.grad[real], trl_logp.grad[real], atol=ATOL, rtol=0)
    assert ours.clipfrac > 0  # the case exercises the clip
