"""RewardModelModule and score_sequences: where the score is read, the metrics, learning."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from peft import TaskType
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification

from helpers import quiet_trainer
from leash.config import Arch, PeftConfig, RewardConfig, Scheduler, TinyModelConfig
from leash.data.types import PreferenceBatch
from leash.models.factory import wrap_lora
from leash.models.heads import score_sequences
from leash.models.tiny import tiny_model_config
from leash.models.tokenizers import build_word_tokenizer
from leash.modules.epoch_metrics import pearson_correlation, sign_agreement
from leash.modules.reward import RewardModelModule, pair_metrics
from leash.sequences import IGNORE_INDEX

TOKENIZER = build_word_tokenizer(["a", "b", "c", "d", "e", "f", "good", "bad"])
PAD, EOS = TOKENIZER.pad_token_id, TOKENIZER.eos_token_id


def tiny_scorer(arch: Arch = Arch.gpt2, seed: int = 0) -> torch.nn.Module:
    config = tiny_model_config(
        TinyModelConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=2, seed=seed), TOKENIZER
    )
    config.num_labels = 1
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


def encode(text: str) -> list[int]:
    """BOS + words + EOS."""
    return TOKENIZER(text)["input_ids"] + [EOS]


def pad(rows: Sequence[list[int]], width: int, *, left: bool = False) -> tuple[torch.Tensor, ...]:
    """(B, width) ids and attention mask, padded with PAD on the right (or left)."""
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span], mask[i, span] = torch.tensor(row), 1
    return ids, mask


def unpadded_score(model: torch.nn.Module, row: list[int]) -> float:
    """The model's own pooled logit on one unpadded row: with no pad id, HF reads the last token."""
    config = model.config
    pad_id, config.pad_token_id = config.pad_token_id, None
    try:
        with torch.no_grad():
            return model(input_ids=torch.tensor([row])).logits[0, 0].item()
    finally:
        config.pad_token_id = pad_id


def make_batch(pairs: Sequence[tuple], indices: Sequence[int]) -> PreferenceBatch:
    """Pairs ``(prompt, chosen, rejected[, chosen_gold, rejected_gold])`` -> PreferenceBatch."""
    prompts = [TOKENIZER(p[0])["input_ids"] for p in pairs]
    sides = []
    for column in (1, 2):
        rows = [prompt + encode(p[column])[1:] for prompt, p in zip(prompts, pairs, strict=True)]
        ids, mask = pad(rows, max(len(r) for p in pairs for r in map(encode, p[1:3])) + 4)
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
        for row, prompt in enumerate(prompts):
            labels[row, : len(prompt)] = IGNORE_INDEX
        sides += [ids, mask, labels]
    gold = [torch.tensor([p[k] for p in pairs]) if len(pairs[0]) > 3 else None for k in (3, 4)]
    return PreferenceBatch(
        *sides,
        index=torch.tensor(list(indices)),
        chosen_gold_reward=gold[0],
        rejected_gold_reward=gold[1],
    )


def loader(pairs, batch_size) -> DataLoader:
    return DataLoader(
        list(enumerate(pairs)),
        batch_size=batch_size,
        collate_fn=lambda rows: make_batch([p for _, p in rows], [i for i, _ in rows]),
    )


trainer = quiet_trainer


ROWS = [encode("a b c"), encode("d"), encode("e f a b c d"), encode("good bad")]


# ------------------------------------------------------------------------ where the score is read
@pytest.mark.parametrize("arch", [Arch.gpt2, Arch.llama], ids=lambda a: a.value)
@pytest.mark.parametrize("lora", [False, True], ids=["plain", "lora"])
def test_score_is_read_at_the_last_real_token(arch, lora):
    model = tiny_scorer(arch)
    if lora:
        model = wrap_lora(model, PeftConfig(enabled=True, r=4), TaskType.SEQ_CLS)
        with torch.no_grad():  # LoRA B starts at 0: make the adapter matter
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.5)
        model.eval()
    expected = torch.tensor([unpadded_score(model, row) for row in ROWS])
    longest = max(map(len, ROWS))
    with torch.no_grad():
        for width in (longest, longest + 5):  # different padding amounts, then more appended
            for left in (False, True):
                scores = score_sequences(model, *pad(ROWS, width, left=left))
                torch.testing.assert_close(scores, expected, rtol=0, atol=1e-5)
    assert len(set(expected.tolist())) == len(ROWS)  # the rows really score differently


def test_eos_padding_fools_pad_id_pooling_but_not_the_attention_mask():
    """Why the mask decides: with pad == EOS (GPT-2 style), HF pools one token too early."""
    model = tiny_scorer()
    model.config.pad_token_id = EOS
    ids, mask = pad(ROWS, max(map(len, ROWS)) + 2)
    ids[mask == 0] = EOS
    expected = torch.tensor([unpadded_score(model, row) for row in ROWS])
    with torch.no_grad():
        ours = score_sequences(model, ids, mask)
        pooled_by_pad_id = model(input_ids=ids, attention_mask=mask).logits[:, 0]
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    assert (pooled_by_pad_id - expected).abs().min() > 1e-4


# ------------------------------------------------------------------------------ hand-made numbers
def test_pair_metrics_and_loss_by_hand():
    chosen, rejected = torch.tensor([1.0, -0.5]), torch.tensor([0.0, 0.5])
    metrics = pair_metrics(chosen, rejected)
    assert metrics["accuracy"].item() == 0.5
    assert metrics["margin"].item() == pytest.approx((1.0 - 1.0) / 2)
    assert metrics["reward/mean"].item() == pytest.approx(0.25)
    # deviations from 0.25: 0.75, -0.75, -0.25, 0.25 -> variance (2·0.5625 + 2·0.0625) / 4
    assert metrics["reward/std"].item() == pytest.approx(math.sqrt(0.3125))


def test_sign_agreement_and_pearson_by_hand():
    predicted = torch.tensor([0.5, -1.0, 0.0, 2.0, 3.0, 1.0])
    gold = torch.tensor([1.0, 1.0, 1.0, -2.0, float("nan"), 0.0])
    # usable: the first four (NaN and tie left out); signs agree only on the first
    assert sign_agreement(predicted, gold).item() == pytest.approx(0.25)
    assert sign_agreement(predicted, torch.full((6,), float("nan"))) is None
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, float("nan")])
    y = torch.tensor([2.0, 4.0, 5.0, 9.0, 1.0])
    # centred x = ±1.5, ±0.5; centred y = -3, -1, 0, 4: r = 11 / sqrt(5 · 26)
    assert pearson_correlation(x, y).item() == pytest.approx(11 / math.sqrt(130))
    assert pearson_correlation(torch.ones(3), torch.arange(3.0)) is None


# ------------------------------------------------------------------------------------- the module
GOLD_PAIRS = [
    ("a", "b c", "d", 1.0, -0.5),
    ("b c", "e", "f a", 0.25, 0.75),
    ("d", "c a", "b", 2.0, 0.0),
    ("e", "c", "a d", -1.0, -1.5),
    ("f", "a a", "e", 0.5, 0.5),
]


def test_module_logs_bradley_terry_with_margin_centring_and_gold_metrics():
    cfg = RewardConfig(margin=0.5, center_coef=0.1)
    module = RewardModelModule(tiny_scorer(), cfg)
    run = trainer()
    run.validate(module, loader(GOLD_PAIRS, 3), verbose=False)
    chosen, rejected, gold = [], [], []
    with torch.no_grad():
        for batch in loader(GOLD_PAIRS, 3):
            c, r = module.pair_rewards(batch)
            chosen.append(c)
            rejected.append(r)
            gold += [batch.chosen_gold_reward, batch.rejected_gold_reward]
    c, r = torch.cat(chosen).numpy(), torch.cat(rejected).numpy()
    loss = np.log1p(np.exp(-(c - r - 0.5))) + 0.1 * (c + r) ** 2
    metrics = run.callback_metrics
    assert metrics["val/loss"].item() == pytest.approx(loss.mean(), abs=1e-5)
    assert metrics["val/accuracy"].item() == pytest.approx(np.mean(c > r))
    assert metrics["val/margin"].item() == pytest.approx(np.mean(c - r), abs=1e-6)
    rewards = np.concatenate([c, r])  # every held-out reward, not a mean of batch spreads
    assert metrics["val/reward/mean"].item() == pytest.approx(rewards.mean(), abs=1e-6)
    assert metrics["val/reward/std"].item() == pytest.approx(rewards.std(), abs=1e-6)
    gold_margin = np.array([p[3] - p[4] for p in GOLD_PAIRS])
    usable = gold_margin != 0  # the last pair is a gold tie
    agree = np.sign(c - r)[usable] == np.sign(gold_margin)[usable]
    # over the 4 usable pairs of the whole split (the batches held 3 of 3 and 1 of 2)
    assert metrics["val/gold_accuracy"].item() == pytest.approx(agree.mean())
    scores = np.concatenate([c[:3], r[:3], c[3:], r[3:]])
    golds = torch.cat(gold).numpy()
    corr = np.corrcoef(scores, golds)[0, 1]
    assert metrics["val/gold_corr"].item() == pytest.approx(corr, abs=1e-5)
    assert module.roles == {"reward": module.reward_model}


def test_reward_model_learns_a_separable_toy():
    """Chosen responses say `good`, rejected ones `bad`: train accuracy must reach 1."""
    words = ["a", "b", "c", "d", "e", "f"]
    pairs = [(w, f"{words[i - 1]} good", f"{words[i - 2]} bad") for i, w in enumerate(words)]
    pairs += [(f"{w} {w}", f"good {w}", f"bad {words[-1 - i]}") for i, w in enumerate(words)]
    cfg = RewardConfig(lr=3e-3, scheduler=Scheduler.constant, max_steps=40)
    module = RewardModelModule(tiny_scorer().train(), cfg)
    data = loader(pairs, 4)

    def accuracy() -> float:
        with torch.no_grad():
            wins = [(c > r).float() for c, r in map(module.pair_rewards, data)]
        return torch.cat(wins).mean().item()

    before = accuracy()
    trainer(max_steps=40).fit(module, data)
    module.eval()
    assert before < 1.0
    assert accuracy() == 1.0
