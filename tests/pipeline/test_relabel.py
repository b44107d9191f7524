"""Synthetic-gold mode: pairs relabelled by a judge's Bradley-Terry probabilities."""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from composing import composer
from leash.config import DataSource, validate
from leash.data.datamodule import PreferenceDataModule
from leash.data.formats import RowKind
from leash.models.judge import Judge
from leash.pipeline.relabel import (
    label_stream,
    pair_texts,
    preference_probability,
    relabel_rows,
    swapped,
)
from leash.pipeline.stages import Stages
from tokenizer_zoo import gpt2_like, gpt2_pad_eos

REPO = Path(__file__).resolve().parents[2]
HH_FILE = REPO / "experiments" / "data" / "hh_style.jsonl"


def lookup_scores(table: dict[str, float]):
    """A fake judge: the score of a response is looked up in ``table`` (prompts ignored)."""

    def score(prompts: list[str], responses: list[str]) -> torch.Tensor:
        assert len(prompts) == len(responses)
        return torch.tensor([table[r] for r in responses], dtype=torch.float64)

    return score


def scored_rows(count: int, seed: int = 0) -> tuple[list[dict], dict[str, float]]:
    """``count`` explicit rows whose responses have normal scores (spread 2)."""
    rng = np.random.default_rng(seed)
    rows, table = [], {}
    for i in range(count):
        chosen, rejected = f"answer a{i}", f"answer b{i}"
        table[chosen], table[rejected] = rng.normal(0, 2), rng.normal(0, 2)
        rows.append({"prompt": f"question {i}", "chosen": chosen, "rejected": rejected})
    return rows, table


def kept(rows: list[dict], relabelled: list[dict]) -> np.ndarray:
    """Whether each pair kept its source order."""
    pairs = zip(rows, relabelled, strict=True)
    return np.array([new["chosen"] == old["chosen"] for old, new in pairs])


def test_the_probability_is_a_sigmoid_of_the_margin_over_the_temperature():
    chosen, rejected = np.array([1.0, 0.0, 2.0, 5.0]), np.array([0.0, 1.0, 2.0, -1000.0])
    sigmoid = 1 / (1 + math.exp(-0.5))  # margin 1 at T = 2
    np.testing.assert_allclose(
        preference_probability(chosen, rejected, 2.0), [sigmoid, 1 - sigmoid, 0.5, 1.0]
    )
    np.testing.assert_array_equal(preference_probability(chosen, rejected, 0.0), [1, 0, 0.5, 1])


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_labels_follow_the_bradley_terry_probabilities(temperature):
    rows, table = scored_rows(4000)
    relabelled, stats = relabel_rows(
        rows, RowKind.explicit, lookup_scores(table), temperature, label_stream(0, 0)
    )
    chosen = np.array([table[r["chosen"]] for r in rows])
    rejected = np.array([table[r["rejected"]] for r in rows])
    p = preference_probability(chosen, rejected, temperature)
    keep = kept(rows, relabelled)
    standard_error = math.sqrt(np.sum(p * (1 - p))) / len(p)
    assert abs(keep.mean() - p.mean()) < 4 * standard_error
    assert stats.flipped == int((~keep).sum()) and stats.scored == stats.rows == 4000
    assert stats.mean_probability == pytest.approx(p.mean())
    for low, high in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):  # and pair by pair, not just on average
        band = (p >= low) & (p < high)
        error = math.sqrt(np.sum(p[band] * (1 - p[band]))) / band.sum()
        assert abs(keep[band].mean() - p[band].mean()) < 4 * error
    for old, new in zip(rows, relabelled, strict=True):  # the scores travel with their responses
        assert new["chosen_judge_score"] == table[new["chosen"]]
        assert new["rejected_judge_score"] == table[new["rejected"]]
        assert {new["chosen"], new["rejected"]} == {old["chosen"], old["rejected"]}


def test_at_temperature_zero_the_higher_score_always_wins_and_ties_keep_their_order():
    rows, table = scored_rows(500)
    table["answer b3"] = table["answer a3"]  # one tie
    relabelled, stats = relabel_rows(
        rows, RowKind.explicit, lookup_scores(table), 0.0, label_stream(0, 0)
    )
    assert all(r["chosen_judge_score"] >= r["rejected_judge_score"] for r in relabelled)
    assert relabelled[3]["chosen"] == "answer a3" and stats.ties == 1
    again, _ = relabel_rows(rows, RowKind.explicit, lookup_scores(table), 0.0, label_stream(9, 0))
    assert again == relabelled  # deterministic whatever the seed


def test_the_same_seed_gives_the_same_labels_and_another_seed_others():
    rows, table = scored_rows(300)
    score = lookup_scores(table)
    first, _ = relabel_rows(rows, RowKind.explicit, score, 1.0, label_stream(0, 0))
    second, _ = relabel_rows(rows, RowKind.explicit, score, 1.0, label_stream(0, 0))
    other, _ = relabel_rows(rows, RowKind.explicit, score, 1.0, label_stream(1, 0))
    assert first == second
    assert first != other


def test_a_swap_moves_every_column_of_each_response_and_keeps_the_row_format():
    row = {"prompt": "p", "chosen": "a", "rejected": "b", "chosen_gold_reward": 1.0,
           "rejected_gold_reward": -1.0, "chosen_ended": True, "rejected_ended": False,
           "reference_chosen_logps": -3.0, "reference_rejected_logps": -4.0}
    assert swapped(row) == {"prompt": "p", "chosen": "b", "rejected": "a",
                            "chosen_gold_reward": -1.0, "rejected_gold_reward": 1.0,
                            "chosen_ended": False, "rejected_ended": True,
                            "reference_chosen_logps": -4.0, "reference_rejected_logps": -3.0}


def test_implicit_and_conversational_rows_give_the_judge_the_same_dialogue():
    implicit = {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello!",
                "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."}
    assert pair_texts(implicit, RowKind.implicit) == (
        "\n\nHuman: Hi?\n\nAssistant:", " Hello!", " Go away."
    )
    user = {"role": "user", "content": "Hi?"}
    conversational = {"chosen": [user, {"role": "assistant", "content": "Hello!"}],
                      "rejected": [user, {"role": "assistant", "content": "Go away."}]}
    assert pair_texts(conversational, RowKind.conversational) == pair_texts(
        implicit, RowKind.implicit
    )
    assert pair_texts({"chosen": "no marker", "rejected": "at all"}, RowKind.implicit) is None


def test_unreadable_rows_are_kept_unchanged_and_counted():
    rows, table = scored_rows(3)
    rows.insert(1, {"prompt": "q", "chosen": None, "rejected": "b"})
    relabelled, stats = relabel_rows(
        rows, RowKind.explicit, lookup_scores(table), 1.0, label_stream(0, 0)
    )
    assert (stats.rows, stats.scored) == (4, 3)
    assert relabelled[1] == {**rows[1], "chosen_judge_score": None, "rejected_judge_score": None}


# ----------------------------------------------------------------------- with a real judge
def tiny_judge(folder: Path) -> Path:
    """A randomly initialised GPT-2 reward model saved with its own GPT-2-style tokenizer."""
    tokenizer = gpt2_like()
    tokenizer.model_max_length = 256
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2,
                        n_positions=256, num_labels=1, pad_token_id=tokenizer.eos_token_id)
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_saved_judge_relabels_real_text_through_the_pipeline(tmp_path):
    judge_path = tiny_judge(tmp_path / "judge")
    data_file = tmp_path / "rows.jsonl"
    data_file.write_text("".join(HH_FILE.read_text().splitlines(keepends=True)[:40]))
    common = ["experiment=real_text_offline", f"data.path={data_file}",
              f"paths.cache_dir={tmp_path / 'cache'}", f"data.relabel_with={judge_path}"]
    with composer(tmp_path / "run") as compose:
        greedy = Stages(validate(compose([*common, "data.relabel_temperature=0"])))
        noisy = Stages(validate(compose([*common, "data.relabel_temperature=1"])))
        plain = Stages(validate(compose(common[:3])))
    assert len({greedy.pairs_key(), noisy.pairs_key(), plain.pairs_key()}) == 3
    assert greedy.sft_key() == plain.sft_key()  # the judge reaches the pairs, not the SFT policy

    data = greedy.preference_data()
    assert data.source == DataSource.disk
    assert Path(data.path).parent.name == "pairs" and Path(data.path).name == greedy.pairs_key()
    assert greedy.preference_data().path == data.path  # cached
    saved = datasets.load_from_disk(data.path)["train"]
    assert len(saved) == 40
    scores = zip(saved["chosen_judge_score"], saved["rejected_judge_score"], strict=True)
    assert all(c >= r for c, r in scores)
    judge = Judge.load(str(judge_path))
    prompt, chosen, _ = pair_texts(saved[0], RowKind.implicit)
    assert judge.score([prompt], [chosen]).item() == pytest.approx(saved[0]["chosen_judge_score"])
    summary = json.loads((Path(data.path) / "relabel.json").read_text())
    assert summary["splits"]["train"]["scored"] == 40

    module = PreferenceDataModule(data, gpt2_pad_eos(), view="pairs", seed=0)
    module.setup()
    assert module.bad_rows.total == 0
    assert len(module.pairs("train")) + len(module.pairs("eval")) == 40
