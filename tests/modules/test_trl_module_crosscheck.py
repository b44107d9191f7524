"""DPOModule and RewardModelModule against TRL 1.16's trainers, from input ids to metrics.

Same models, same tokens: a real ``DPOTrainer`` / ``RewardTrainer`` tokenises a small text
data set (byte-level tokenizer: BOS + prompt, response + EOS appended by TRL); its processed
rows (``prompt_ids``/``chosen_ids``/``rejected_ids``) are the single source of tokens. TRL's
own collator pads them into its batch, and the PreferenceBatch for leash is built from the same
ids, right padded to the same width; the test first asserts the token tensors are identical.
Then TRL runs its whole ``compute_loss`` (concatenated forward through its fused LM head,
completion masks, reference forward, loss, logged metrics) and leash runs
``DPOModule.compute`` on the same policy and reference objects.

Differences on purpose:
- SimPO is not compared here: TRL 1.16's DPOTrainer dropped it (its CPO trainer's loss is
  cross-checked on tensors in test_trl_loss_crosscheck.py).
- TRL's "sigmoid" ignores ``label_smoothing``; cDPO is compared with TRL's "aot", which equals
  cDPO on a batch of one pair (its sort over the batch is then the identity).
- Rewards of a sequence-classification model: TRL pools at the last token that is not the pad
  id, leash at the last token the attention mask marks real. They agree here because the byte
  tokenizer's pad token is not EOS; test_reward_module.py shows where they part (pad == EOS).
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForSequenceClassification,
)
from trl import DPOConfig as TRLDPOConfig
from trl import DPOTrainer, RewardTrainer
from trl import RewardConfig as TRLRewardConfig

from leash.config import DPOConfig, RewardConfig
from leash.data.types import PreferenceBatch
from leash.models.factory import freeze
from leash.models.reference import FrozenCopy
from leash.models.tokenizers import build_byte_tokenizer
from leash.modules.dpo import DPOModule, step_metrics
from leash.modules.reward import RewardModelModule
from leash.sequences import IGNORE_INDEX

ATOL = 1e-5
TOKENIZER = build_byte_tokenizer()
TEXTS = {
    "prompt": ["Q: 2+2?", "hi", "sky is", "a"],
    "chosen": [" 4", " hello there", " blue", "bc"],
    "rejected": [" five", " go", " green and wide", "zzz"],
}
METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
           "rewards/margins", "logps/chosen", "logps/rejected"]


def gpt2_config(seed_offset: int = 0, **extra) -> GPT2Config:
    torch.manual_seed(seed_offset)
    return GPT2Config(
        vocab_size=len(TOKENIZER),
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.5,  # far from uniform: implicit rewards of order 1
        bos_token_id=TOKENIZER.bos_token_id,
        eos_token_id=TOKENIZER.eos_token_id,
        pad_token_id=TOKENIZER.pad_token_id,
        **extra,
    )


def preference_batch(rows: list[dict], width: int) -> PreferenceBatch:
    """leash's batch from TRL's processed rows: prompt + response ids, right padded to width."""
    sides = []
    for key in ("chosen_ids", "rejected_ids"):
        ids = torch.full((len(rows), width), TOKENIZER.pad_token_id)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX)
        for i, row in enumerate(rows):
            prompt, response = row["prompt_ids"], row[key]
            end = len(prompt) + len(response)
            ids[i, :end] = torch.tensor(prompt + response)
            mask[i, :end] = 1
            labels[i, len(prompt) : end] = torch.tensor(response)
        sides += [ids, mask, labels]
    return PreferenceBatch(
        *sides,
        index=torch.arange(len(rows)),
    )


def trl_dpo(tmp_path, loss_type: str, beta: float, smoothing: float):
    """A DPOTrainer over a fresh policy and a different frozen reference (live, not precomputed)."""
    policy = GPT2LMHeadModel(gpt2_config(0)).train()
    reference = freeze(GPT2LMHeadModel(gpt2_config(1)))
    args = TRLDPOConfig(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        bf16=False,
        loss_type=[loss_type],
        beta=beta,
        label_smoothing=smoothing,
    )
    trainer = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_dict(TEXTS),
        processing_class=TOKENIZER,
    )
    return trainer, policy, reference


def run_both(trainer, module: DPOModule, rows: list[dict]) -> tuple[dict, dict]:
    """TRL's loss and logged metrics, and leash's, on the same rows."""
    columns = ("prompt_ids", "chosen_ids", "rejected_ids")
    trl_batch = trainer.data_collator([{k: row[k] for k in columns} for row in rows])
    ours = preference_batch(rows, trl_batch["input_ids"].shape[1])
    stacked = torch.cat([ours.chosen_input_ids, ours.rejected_input_ids])
    assert torch.equal(trl_batch["input_ids"], stacked)
    assert torch.equal(trl_batch["attention_mask"], torch.cat(
        [ours.chosen_attention_mask, ours.rejected_attention_mask]))
    trainer._metrics["train"].clear()
    with torch.no_grad():
        trl = {"loss": trainer.compute_loss(trainer.model, trl_batch).item()}
        trl |= {k: v[-1] for k, v in trainer._metrics["train"].items() if k in METRICS}
        leash = {k: v.item() for k, v in step_metrics(module.compute(ours)).items()}
    return trl, leash


@pytest.mark.parametrize(
    ("loss", "beta", "smoothing"),
    [("sigmoid", 0.1, 0.0), ("sigmoid", 1.0, 0.0), ("robust", 0.5, 0.2), ("ipo", 0.1, 0.0),
     ("ipo", 1.0, 0.0), ("hinge", 0.5, 0.0)],
)
def test_dpo_module_matches_trl_dpo_trainer(tmp_path, loss, beta, smoothing):
    trainer, policy, reference = trl_dpo(tmp_path, loss, beta, smoothing)
    cfg = DPOConfig(loss=loss, beta=beta, label_smoothing=smoothing, reference="copy")
    module = DPOModule(policy, FrozenCopy(reference), cfg)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    trl, leash = run_both(trainer, module, rows)
    assert set(trl) == set(METRICS)
    for key in METRICS:
        assert leash[key] == pytest.approx(trl[key], abs=ATOL), key
    assert 0 < leash["rewards/accuracies"] < 1  # both signs of the margin occur


def test_cdpo_matches_trl_aot_pair_by_pair(tmp_path):
    trainer, policy, reference = trl_dpo(tmp_path, "aot", 0.5, 0.25)
    cfg = DPOConfig(loss="sigmoid", beta=0.5, label_smoothing=0.25, reference="copy")
    module = DPOModule(policy, FrozenCopy(reference), cfg)
    for i in range(len(trainer.train_dataset)):
        trl, leash = run_both(trainer, module, [trainer.train_dataset[i]])
        for key in METRICS:
            assert leash[key] == pytest.approx(trl[key], abs=ATOL), (i, key)


# ------------------------------------------------------------------------------ reward model
def scalar_model(arch: str):
    if arch == "gpt2":
        return GPT2ForSequenceClassification(gpt2_config(2, num_labels=1))
    torch.manual_seed(2)
    config = LlamaConfig(
        vocab_size=len(TOKENIZER),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        initializer_range=0.5,
        pad_token_id=TOKENIZER.pad_token_id,
        num_labels=1,
    )
    return LlamaForSequenceClassification(config)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize(("margin", "center"), [(0.0, None), (0.5, 0.01)])
def test_reward_module_matches_trl_reward_trainer(tmp_path, arch, margin, center):
    model = scalar_model(arch).train()
    texts = dict(TEXTS)
    if margin:
        texts["margin"] = [margin] * len(TEXTS["prompt"])  # TRL takes per-pair margins
    args = TRLRewardConfig(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        bf16=False,
        center_rewards_coefficient=center,
    )
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(texts), processing_class=TOKENIZER
    )
    columns = ["chosen_ids", "rejected_ids"] + (["margin"] if margin else [])
    rows = [trainer.train_dataset[i] for i in range(len(TEXTS["prompt"]))]
    trl_batch = trainer.data_collator([{k: row[k] for k in columns} for row in rows])
    # TRL's RM rows are whole sequences; as leash rows they have an empty prompt (labels unused)
    ours = preference_batch(
        [{"prompt_ids": [], "chosen_ids": r["chosen_ids"], "rejected_ids": r["rejected_ids"]}
         for r in rows],
        trl_batch["input_ids"].shape[1],
    )
    assert torch.equal(trl_batch["input_ids"], torch.cat(
        [ours.chosen_input_ids, ours.rejected_input_ids]))
    trainer._metrics["train"].clear()
    module = RewardModelModule(model, RewardConfig(margin=margin, center_coef=center or 0.0))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, trl_batch).item()
        step = module.compute(ours)
    logged = trainer._metrics["train"]
    assert step.loss.item() == pytest.approx(trl_loss, abs=ATOL)
    assert step.metrics["accuracy"].item() == pytest.approx(logged["accuracy"][-1], abs=ATOL)
    assert step.metrics["margin"].item() == pytest.approx(logged["margin"][-1], abs=ATOL)
    assert step.metrics["reward/mean"].item() == pytest.approx(logged["mean_reward"][-1], abs=ATOL)
