"""Cross-check leash's preference losses against TRL 1.16's own code on the same tensors.

How TRL is called, least invasively:
- DPO family: a real ``DPOTrainer`` (tiny GPT-2 from a config, locally built byte tokenizer,
  two-row in-memory dataset, ``precompute_ref_log_probs=True``) runs its public
  ``compute_loss`` on a stand-in *model*: a callable that returns the per-token log-probs we
  choose. The reference log-probs travel in the batch, as they do when precomputed. TRL's
  loss arrives as the batch mean and its rewards as the logged means of ``rewards/*``, so each
  pair is checked in a batch of one, and the whole batch is checked through the means.
- SimPO: TRL 1.16's DPOTrainer dropped it; it lives in ``trl.experimental.cpo`` as
  ``CPOTrainer.cpo_loss``, a method on length-averaged log-probs that reads six attributes,
  so it is called with a minimal stand-in ``self``.
- Bradley–Terry: a real ``RewardTrainer`` runs ``compute_loss`` on a stand-in model that
  returns the rewards we choose as its logits.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

from leash.losses.preference import bradley_terry_loss, preference_loss
from leash.models.tokenizers import build_byte_tokenizer

with warnings.catch_warnings():  # TRL warns that trl.experimental is unstable
    warnings.simplefilter("ignore")
    from trl.experimental.cpo import CPOTrainer

ATOL = 1e-5

# Four pairs with varied lengths and signs of the log-ratio gap (pair 1 prefers the rejected).
POLICY_CHOSEN = torch.tensor([-12.5, -3.25, -20.0, -7.0])
POLICY_REJECTED = torch.tensor([-15.0, -1.5, -26.75, -7.5])
REFERENCE_CHOSEN = torch.tensor([-13.0, -2.0, -21.5, -6.0])
REFERENCE_REJECTED = torch.tensor([-14.0, -2.5, -24.0, -9.0])
CHOSEN_LENGTHS = torch.tensor([5, 2, 7, 3])
REJECTED_LENGTHS = torch.tensor([6, 1, 9, 4])

# (TRL loss_type, leash loss_type, beta, label_smoothing)
DPO_CASES = [
    ("sigmoid", "sigmoid", 0.1, 0.0),
    ("sigmoid", "sigmoid", 0.5, 0.0),
    ("robust", "robust", 0.1, 0.2),
    ("robust", "robust", 0.5, 0.0),
    ("ipo", "ipo", 0.1, 0.0),
    ("ipo", "ipo", 0.5, 0.0),
    ("hinge", "hinge", 0.1, 0.0),
    ("hinge", "hinge", 0.5, 0.0),
]
# cDPO: TRL 1.16's "sigmoid" ignores label_smoothing (its docs: smoothing is used by robust and
# EXO only). Its "aot" loss applies the cDPO form -(1-eps)·logσ(βΔ) - eps·logσ(-βΔ) to
# Δ = sorted(policy log-ratios) - sorted(reference log-ratios) over the batch; with one pair the
# sort is the identity and Δ = h, so "aot" on a batch of one *is* TRL's cDPO. Per pair only.
CDPO_CASES = [("aot", "sigmoid", 0.1, 0.1), ("aot", "sigmoid", 0.5, 0.3)]


class _LogpsModel:
    """Stand-in causal LM: returns fixed per-token log-probs, in the layout TRL's fused head has.

    Row i of the batch is prompt token 0 then ``lengths[i]`` completion tokens; shifted position
    0 scores the first completion token, and it carries the whole summed log-prob (the rest 0),
    so TRL's sum over positions returns our sums exactly.
    """

    def __init__(self, logps: torch.Tensor, width: int) -> None:
        self.log_probs = torch.zeros(len(logps), width - 1)
        self.log_probs[:, 0] = logps

    def __call__(self, **kwargs) -> SimpleNamespace:
        zeros = torch.zeros_like(self.log_probs)
        return SimpleNamespace(
            log_probs=self.log_probs, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool()
        )


def _dpo_batch(
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    chosen_lengths: torch.Tensor,
    rejected_lengths: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """TRL's collated DPO batch: chosen rows then rejected rows, one prompt token each."""
    lengths = torch.cat([chosen_lengths, rejected_lengths])
    width = 1 + int(lengths.max())
    positions = torch.arange(width)
    completion_mask = ((positions >= 1) & (positions <= lengths[:, None])).long()
    return {
        "input_ids": torch.zeros(len(lengths), width, dtype=torch.long),
        "attention_mask": (positions <= lengths[:, None]).long(),
        "completion_mask": completion_mask,
        "ref_chosen_logps": reference_chosen,
        "ref_rejected_logps": reference_rejected,
    }


def _trl_dpo(trainer: DPOTrainer, index: slice | int) -> dict[str, float]:
    """TRL's mean loss and logged reward metrics on the pairs ``index`` of the module data."""
    index = slice(index, index + 1) if isinstance(index, int) else index
    batch = _dpo_batch(
        REFERENCE_CHOSEN[index],
        REFERENCE_REJECTED[index],
        CHOSEN_LENGTHS[index],
        REJECTED_LENGTHS[index],
    )
    model = _LogpsModel(
        torch.cat([POLICY_CHOSEN[index], POLICY_REJECTED[index]]), batch["input_ids"].shape[1]
    )
    trainer._metrics["train"].clear()
    loss = trainer.compute_loss(model, batch)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items() if k.startswith("rewards/")}
    return {"loss": loss.item(), **logged}


def _ours(loss_type: str, beta: float, label_smoothing: float, index: slice) -> dict[str, float]:
    """The same numbers from leash: mean loss and the reward metrics TRL logs."""
    out = preference_loss(
        loss_type,
        POLICY_CHOSEN[index],
        POLICY_REJECTED[index],
        REFERENCE_CHOSEN[index],
        REFERENCE_REJECTED[index],
        beta=beta,
        label_smoothing=label_smoothing,
        chosen_lengths=CHOSEN_LENGTHS[index],
        rejected_lengths=REJECTED_LENGTHS[index],
    )
    return {
        "loss": out.losses.mean().item(),
        "rewards/chosen": out.chosen_rewards.mean().item(),
        "rewards/rejected": out.rejected_rewards.mean().item(),
        "rewards/accuracies": (out.chosen_rewards > out.rejected_rewards).float().mean().item(),
        "rewards/margins": (out.chosen_rewards - out.rejected_rewards).mean().item(),
    }


def _assert_same(ours: dict[str, float], trl: dict[str, float]) -> None:
    assert set(ours) == set(trl)
    for key, value in ours.items():
        assert value == pytest.approx(trl[key], abs=ATOL), key


@pytest.fixture(scope="module")
def dpo_trainer(tmp_path_factory) -> Callable[[str, float, float], DPOTrainer]:
    """Builds (once per configuration) a real DPOTrainer around a tiny GPT-2."""
    tokenizer = build_byte_tokenizer()
    data = Dataset.from_dict({"prompt": ["ab", "cd"], "chosen": ["x", "y"], "rejected": ["z", "w"]})
    built: dict[tuple[str, float, float], DPOTrainer] = {}

    def build(loss_type: str, beta: float, label_smoothing: float) -> DPOTrainer:
        key = (loss_type, beta, label_smoothing)
        if key not in built:
            config = GPT2Config(
                vocab_size=len(tokenizer),
                n_embd=8,
                n_layer=1,
                n_head=1,
                n_positions=32,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            args = DPOConfig(
                output_dir=str(tmp_path_factory.mktemp("dpo")),
                report_to="none",
                use_cpu=True,
                bf16=False,
                precompute_ref_log_probs=True,
                loss_type=[loss_type],
                beta=beta,
                label_smoothing=label_smoothing,
            )
            built[key] = DPOTrainer(
                model=GPT2LMHeadModel(config),
                args=args,
                train_dataset=data,
                processing_class=tokenizer,
            )
        return built[key]

    return build


@pytest.mark.parametrize(("trl_type", "loss_type", "beta", "smoothing"), DPO_CASES + CDPO_CASES)
def test_dpo_family_matches_trl_per_pair(dpo_trainer, trl_type, loss_type, beta, smoothing):
    trainer = dpo_trainer(trl_type, beta, smoothing)
    for i in range(len(POLICY_CHOSEN)):
        _assert_same(_ours(loss_type, beta, smoothing, slice(i, i + 1)), _trl_dpo(trainer, i))


@pytest.mark.parametrize(("trl_type", "loss_type", "beta", "smoothing"), DPO_CASES)
def test_dpo_family_matches_trl_batch_means(dpo_trainer, trl_type, loss_type, beta, smoothing):
    trainer = dpo_trainer(trl_type, beta, smoothing)
    everything = slice(None)
    _assert_same(_ours(loss_type, beta, smoothing, everything), _trl_dpo(trainer, everything))


def test_crosscheck_cases_are_not_trivial():
    """Guard: the data must give both accuracy values, active hinges and cDPO != DPO."""
    accuracies = _ours("sigmoid", 0.1, 0.0, slice(None))["rewards/accuracies"]
    assert 0 < accuracies < 1
    hinge = preference_loss(
        "hinge", POLICY_CHOSEN, POLICY_REJECTED, REFERENCE_CHOSEN, REFERENCE_REJECTED, beta=0.5
    ).losses
    assert (hinge == 0).any() and (hinge > 0).any()
    assert _ours("sigmoid", 0.1, 0.1, slice(None)) != _ours("sigmoid", 0.1, 0.0, slice(None))


def test_trl_sigmoid_ignores_label_smoothing(dpo_trainer):
    """Why cDPO is checked against TRL's "aot" and not its "sigmoid": the latter drops eps."""
    smoothed = _trl_dpo(dpo_trainer("sigmoid", 0.1, 0.1), slice(None))
    plain = _trl_dpo(dpo_trainer("sigmoid", 0.1, 0.0), slice(None))
    assert smoothed["loss"] == pytest.approx(plain["loss"], abs=1e-7)


@pytest.mark.parametrize(("beta", "gamma", "smoothing"), [(2.0, 0.5, 0.0), (2.5, 1.0, 0.1)])
def test_simpo_matches_trl_cpo(beta, gamma, smoothing):
    # cpo_loss reads only these attributes (alpha = 0 disables AlphaPO's reward transform).
    stand_in = SimpleNamespace(
        alpha=0.0,
        accelerator=SimpleNamespace(device=torch.device("cpu")),
        loss_type="simpo",
        simpo_gamma=gamma,
        beta=beta,
        label_smoothing=smoothing,
    )
    # CPOTrainer averages per token before cpo_loss (get_batch_logps(average_log_prob=True)).
    trl_losses, trl_chosen, trl_rejected = CPOTrainer.cpo_loss(
        stand_in, POLICY_CHOSEN / CHOSEN_LENGTHS, POLICY_REJECTED / REJECTED_LENGTHS
    )
    ours = preference_loss(
        "simpo",
        POLICY_CHOSEN,
        POLICY_REJECTED,
        None,
        None,
        beta=beta,
        simpo_gamma=gamma,
        label_smoothing=smoothing,
        chosen_lengths=CHOSEN_LENGTHS,
        rejected_lengths=REJECTED_LENGTHS,
    )
    # TRL's CPO adds cpo_alpha * NLL of the chosen responses outside cpo_loss; SimPO sets
    # cpo_alpha = 0 and that SFT term is no part of the preference loss, so it is not compared.
    torch.testing.assert_close(ours.losses, trl_losses, rtol=0, atol=ATOL)
    torch.testing.assert_close(ours.chosen_rewards, trl_chosen, rtol=0, atol=ATOL)
    torch.testing.assert_close(ours.rejected_rewards, trl_rejected, rtol=0, atol=ATOL)


# ------------------------------------------------------------------------------ Bradley–Terry
RM_CHOSEN = torch.tensor([1.5, -0.25, 0.75, 2.0])
RM_REJECTED = torch.tensor([0.5, 0.25, -1.0, 2.5])


class _RewardsModel:
    """Stand-in reward model: returns chosen then rejected rewards as (2B, 1) logits."""

    def __call__(self, **kwargs) -> SimpleNamespace:
        return SimpleNamespace(logits=torch.cat([RM_CHOSEN, RM_REJECTED])[:, None])


@pytest.fixture(scope="module")
def reward_trainer(tmp_path_factory) -> Callable[[float | None], RewardTrainer]:
    """Builds (once per centring coefficient) a real RewardTrainer around a tiny GPT-2."""
    tokenizer = build_byte_tokenizer()
    data = Dataset.from_dict({"chosen": ["ax", "cy"], "rejected": ["az", "cw"]})
    built: dict[float | None, RewardTrainer] = {}

    def build(center_coef: float | None) -> RewardTrainer:
        if center_coef not in built:
            config = GPT2Config(
                vocab_size=len(tokenizer),
                n_embd=8,
                n_layer=1,
                n_head=1,
                n_positions=32,
                num_labels=1,
                pad_token_id=tokenizer.pad_token_id,
            )
            args = RewardConfig(
                output_dir=str(tmp_path_factory.mktemp("rm")),
                report_to="none",
                use_cpu=True,
                bf16=False,
                center_rewards_coefficient=center_coef,
            )
            built[center_coef] = RewardTrainer(
                model=GPT2ForSequenceClassification(config),
                args=args,
                train_dataset=data,
                processing_class=tokenizer,
            )
        return built[center_coef]

    return build


@pytest.mark.parametrize(
    ("margin", "center_coef"),
    [
        (None, None),
        (torch.tensor([0.5, 0.0, 2.0, -1.0]), None),
        (None, 0.01),
        (torch.tensor([1.0, 0.25, 0.0, 0.5]), 0.1),
    ],
)
def test_bradley_terry_matches_trl(reward_trainer, margin, center_coef):
    trainer = reward_trainer(center_coef)
    inputs = {"input_ids": torch.zeros(8, 3, dtype=torch.long)}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if margin is not None:
        inputs["margin"] = margin
    trainer._metrics["train"].clear()
    trl_loss = trainer.compute_loss(_RewardsModel(), inputs).item()
    ours = bradley_terry_loss(
        RM_CHOSEN,
        RM_REJECTED,
        margin=0.0 if margin is None else margin,
        center_coef=center_coef or 0.0,
    )
    # TRL adds c · mean((r_c + r_r)²) to the mean logistic loss; our per-pair terms average to it.
    assert ours.mean().item() == pytest.approx(trl_loss, abs=ATOL)
    logged = trainer._metrics["train"]
    assert logged["accuracy"][-1] == pytest.approx((RM_CHOSEN > RM_REJECTED).float().mean().item())
    assert logged["margin"][-1] == pytest.approx((RM_CHOSEN - RM_REJECTED).mean().item())
