"""PreferenceDataModule: sources, seeded splits and order, views, collated batches, reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from leash.config import DataConfig, DataSource
from leash.data.datamodule import PreferenceDataModule
from leash.data.formats import RowKind
from leash.data.types import PreferenceBatch, PromptBatch, SFTBatch
from leash.models.tokenizers import build_byte_tokenizer
from leash.sequences import IGNORE_INDEX

PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(scope="module")
def tok():
    return build_byte_tokenizer()


def preference_rows(num_prompts: int = 12, pairs_per_prompt: int = 3) -> list[dict[str, Any]]:
    """Pairs of varied lengths; prompt k repeats ``pairs_per_prompt`` times, interleaved."""
    return [
        {
            "prompt": f"question {k}?",
            "chosen": " good" + "!" * (j + k % 4),
            "rejected": " bad" * (1 + j),
            "chosen_gold_reward": float(k),
            "rejected_gold_reward": -float(k),
        }
        for j in range(pairs_per_prompt)
        for k in range(num_prompts)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def config(path: str, source: DataSource = DataSource.files, **overrides: Any) -> DataConfig:
    cfg = DataConfig(name="test", source=source, path=path, batch_size=4, eval_batch_size=5)
    cfg.eval_fraction = 0.25
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def module(tok, cfg: DataConfig, view: str = "pairs", seed: int = 0) -> PreferenceDataModule:
    data = PreferenceDataModule(cfg, tok, view=view, seed=seed)  # type: ignore[arg-type]
    data.setup()
    return data


@pytest.fixture()
def pairs_file(tmp_path) -> str:
    return write_jsonl(tmp_path / "pairs.jsonl", preference_rows())


# ------------------------------------------------------------------------- split and order
def _order(tok, path: str, seed: int) -> tuple[list[int], list[int], list[int]]:
    data = module(tok, config(path), seed=seed)
    train = [row.source_index for row in data.pairs("train")]
    evals = [row.source_index for row in data.pairs("eval")]
    loaded = [int(i) for batch in data.train_dataloader() for i in batch.index]
    return train, evals, loaded


def test_same_seed_same_split_and_order_different_seed_differs(tok, pairs_file):
    first, again, other = (_order(tok, pairs_file, seed) for seed in (0, 0, 1))
    assert first == again
    train, evals, loaded = first
    assert sorted(train + evals) == list(range(36))
    assert sorted(loaded) == list(range(len(train)))
    assert loaded != sorted(loaded)  # the train loader shuffles
    assert other[1] != evals and other[0] != train and other[2] != loaded


def test_eval_is_held_out_by_prompt_and_capped(tok, pairs_file):
    data = module(tok, config(pairs_file))
    assert set(data.eval_prompts()).isdisjoint(data.train_prompts())
    assert len(data.eval_prompts()) == 3  # 25% of 12 prompts, with all their pairs
    assert len(data.pairs("eval")) == 9
    capped = module(tok, config(pairs_file, max_train_rows=5, max_eval_rows=2))
    assert len(capped.pairs("train")) == 5 and len(capped.pairs("eval")) == 2
    # The cap takes the first rows of the same seeded order.
    assert [r.source_index for r in capped.pairs("train")] == [
        r.source_index for r in data.pairs("train")[:5]
    ]


def test_pairs_digest_follows_the_rows_and_their_tokens(tok, pairs_file):
    # The precomputed reference log-probs are cached under it: a run whose split, row cap or
    # truncation differs must not reuse another run's values (same counts, other rows).
    digests = lambda data: [data.pairs_digest(split) for split in ("train", "eval")]  # noqa: E731
    first = digests(module(tok, config(pairs_file)))
    assert digests(module(tok, config(pairs_file))) == first
    assert first[0] != first[1]
    for other in (module(tok, config(pairs_file), seed=1),
                  module(tok, config(pairs_file, max_train_rows=5, max_eval_rows=2)),
                  module(tok, config(pairs_file, max_length=12, max_prompt_length=6))):
        changed = digests(other)
        assert changed[0] != first[0] and changed[1] != first[1]


def test_task_source_is_refused(tok):
    with pytest.raises(ValueError, match="task"):
        module(tok, DataConfig(name="t"))


# -------------------------------------------------------------------------------- batches
def test_pair_batches_padding_labels_and_index(tok, pairs_file):
    data = module(tok, config(pairs_file))
    rows = data.pairs("eval")
    batch = next(iter(data.val_dataloader()))
    assert isinstance(batch, PreferenceBatch)
    assert batch.index.tolist() == [0, 1, 2, 3, 4]  # eval is not shuffled
    lengths = [len(r.prompt_ids) + max(len(r.chosen_ids), len(r.rejected_ids)) for r in rows[:5]]
    assert batch.chosen_input_ids.shape == batch.rejected_input_ids.shape == (5, max(lengths))
    for b, row in enumerate(rows[:5]):
        p = len(row.prompt_ids)
        assert row.prompt_ids[0] == BOS
        for side, response in (("chosen", row.chosen_ids), ("rejected", row.rejected_ids)):
            ids = getattr(batch, f"{side}_input_ids")[b].tolist()
            mask = getattr(batch, f"{side}_attention_mask")[b].tolist()
            labels = getattr(batch, f"{side}_labels")[b].tolist()
            end = p + len(response)
            assert response[-1] == EOS
            assert ids == row.prompt_ids + response + [PAD] * (len(ids) - end)
            assert mask == [1] * end + [0] * (len(ids) - end)
            assert labels == [IGNORE_INDEX] * p + response + [IGNORE_INDEX] * (len(ids) - end)
    source = preference_rows()
    expected = [source[r.source_index]["chosen_gold_reward"] for r in rows[:5]]
    assert batch.chosen_gold_reward.tolist() == expected
    assert batch.rejected_gold_reward.tolist() == [-value for value in expected]
    assert batch.reference_chosen_logps is None


def test_attach_reference_logps_shows_up_by_index(tok, pairs_file):
    data = module(tok, config(pairs_file))
    count = len(data.pairs("train"))
    chosen = -torch.arange(count, dtype=torch.float32)
    data.attach_reference_logps("train", chosen, chosen - 100)
    for batch in data.train_dataloader():
        assert torch.equal(batch.reference_chosen_logps, -batch.index.float())
        assert torch.equal(batch.reference_rejected_logps, -batch.index.float() - 100)
    assert next(iter(data.val_dataloader())).reference_chosen_logps is None
    with pytest.raises(ValueError, match="shape"):
        data.attach_reference_logps("eval", chosen, chosen)


def test_prompts_view_deduplicates_and_left_pads(tok, pairs_file):
    data = module(tok, config(pairs_file), view="prompts")
    prompts = data.prompts("train")
    first_seen = list(dict.fromkeys(row.prompt for row in data.pairs("train")))
    assert [p.prompt for p in prompts] == first_seen == data.train_prompts()
    assert len(prompts) == 9
    batch = next(iter(data.ordered_dataloader("eval")))
    assert isinstance(batch, PromptBatch)
    assert batch.index.tolist() == [0, 1, 2]
    for b, prompt in enumerate(data.prompts("eval")):
        ids = batch.input_ids[b].tolist()
        pad = len(ids) - len(prompt.prompt_ids)
        assert ids == [PAD] * pad + prompt.prompt_ids
        assert batch.attention_mask[b].tolist() == [0] * pad + [1] * len(prompt.prompt_ids)
    # Rollout prompts come in full batches (the 9th waits for a later epoch; see below).
    assert [len(b) for b in data.train_dataloader()] == [4, 4]
    # Validation scores the held-out pairs (the online modules' implicit reward model).
    pairs = next(iter(data.val_dataloader()))
    assert isinstance(pairs, PreferenceBatch)
    first = data.pairs("eval")[0]
    tokens = [*first.prompt_ids, *first.chosen_ids]
    assert pairs.index[0] == 0 and pairs.chosen_input_ids[0, : len(tokens)].tolist() == tokens


def _check_sft(batch: SFTBatch, prompts: list[list[int]], responses: list[list[int]]) -> None:
    for b, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        width = batch.input_ids.shape[1]
        pad = width - len(prompt) - len(response)
        assert batch.input_ids[b].tolist() == prompt + response + [PAD] * pad
        assert (
            batch.labels[b].tolist()
            == [IGNORE_INDEX] * len(prompt) + response + [IGNORE_INDEX] * pad
        )
        assert batch.attention_mask[b].sum() == len(prompt) + len(response)


def test_sft_view_from_an_sft_corpus(tok, tmp_path):
    rows = [{"prompt": f"say {k}:", "response": " ok" * (1 + k % 3)} for k in range(10)]
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    data = module(tok, config(path), view="sft")
    assert data.kind == RowKind.sft
    examples = data.sft_rows("eval")
    batch = next(iter(data.val_dataloader()))
    assert isinstance(batch, SFTBatch)
    for example in examples:
        source = rows[example.source_index]
        assert tok.decode(example.prompt_ids) == "<|bos|>" + source["prompt"]
        response = tok(source["response"], add_special_tokens=False).input_ids
        assert example.response_ids == [*response, EOS]
    _check_sft(batch, [e.prompt_ids for e in examples], [e.response_ids for e in examples])
    # No pairs to validate on: the prompts view validates on the held-out prompts.
    prompts = module(tok, config(path), view="prompts")
    assert isinstance(next(iter(prompts.val_dataloader())), PromptBatch)
    with pytest.raises(ValueError, match="SFT corpus"):
        module(tok, config(path), view="pairs")


def test_sft_view_from_preferences_uses_chosen(tok, pairs_file):
    data = module(tok, config(pairs_file), view="sft")
    pairs = data.pairs("eval")[:5]
    batch = next(iter(data.val_dataloader()))
    _check_sft(batch, [p.prompt_ids for p in pairs], [p.chosen_ids for p in pairs])


# -------------------------------------------------------------------------------- sources
def _source_rows(data: PreferenceDataModule) -> list[tuple[str, list[int], list[int]]]:
    rows = data.pairs("train") + data.pairs("eval")
    return sorted((r.prompt, r.chosen_ids, r.rejected_ids) for r in rows)


def test_parquet_csv_and_disk_sources_load_the_same_pairs(tok, tmp_path, pairs_file):
    reference = _source_rows(module(tok, config(pairs_file)))
    table = datasets.Dataset.from_list(preference_rows())
    table.to_parquet(str(tmp_path / "pairs.parquet"))
    table.to_csv(str(tmp_path / "pairs.csv"), index=False)
    table.save_to_disk(str(tmp_path / "saved"))
    for path, source in (
        (tmp_path / "pairs.parquet", DataSource.files),
        (tmp_path / "pairs.csv", DataSource.files),
        (tmp_path / "saved", DataSource.disk),
    ):
        data = module(tok, config(str(path), source=source))
        assert _source_rows(data) == reference, path


def test_eval_split_of_the_source_is_used(tok, tmp_path):
    rows = preference_rows()
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows[:30]),
            "test": datasets.Dataset.from_list(rows[30:]),
        }
    )
    splits.save_to_disk(str(tmp_path / "saved"))
    data = module(tok, config(str(tmp_path / "saved"), source=DataSource.disk))
    assert sorted(r.source_index for r in data.pairs("eval")) == list(range(6))
    assert len(data.pairs("train")) == 30
    # Without a hold-out to carve, the seed still sets the row order (not the row set).
    reseeded = module(tok, config(str(tmp_path / "saved"), source=DataSource.disk), seed=1)
    order = [r.source_index for r in data.pairs("train")]
    other = [r.source_index for r in reseeded.pairs("train")]
    assert order != other and sorted(order) == sorted(other) == list(range(30))
    # A folder of split files also loads through the hub path (datasets.load_dataset(folder)).
    folder = tmp_path / "hub"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows[:30])
    write_jsonl(folder / "test.jsonl", rows[30:])
    hub = module(tok, config(str(folder), source=DataSource.hub))
    assert _source_rows(hub) == _source_rows(data)


def test_glob_of_files(tok, tmp_path):
    rows = preference_rows()
    write_jsonl(tmp_path / "part-0.jsonl", rows[:20])
    write_jsonl(tmp_path / "part-1.jsonl", rows[20:])
    data = module(tok, config(str(tmp_path / "part-*.jsonl")))
    assert len(data.pairs("train")) + len(data.pairs("eval")) == len(rows)


def test_rollout_prompts_come_in_full_batches_and_the_rest_is_logged(tok, tmp_path, caplog):
    # 12 prompts, 3 held out: 9 train prompts in batches of 4 -> 2 full batches, 1 left out.
    data = module(tok, config(write_jsonl(tmp_path / "p.jsonl", preference_rows())), "prompts")
    assert len(data.prompts("train")) == 9
    with caplog.at_level("INFO", logger="leash.data.datamodule"):
        batches = list(data.train_dataloader())
    assert [len(batch) for batch in batches] == [4, 4]
    assert "each epoch's last 1" in caplog.text
    # Reshuffled every epoch: the prompt left out changes, so every prompt takes its turn.
    seen = set()
    loader = data.train_dataloader()
    for epoch in range(6):
        loader.sampler.set_epoch(epoch)  # as Lightning does at every epoch start
        seen |= {int(i) for batch in loader for i in batch.index}
    assert seen == set(range(9))
    # Pair batches are not cut: DPO and the reward model train on every pair.
    pairs = module(tok, config(write_jsonl(tmp_path / "p.jsonl", preference_rows())))
    assert sum(len(b) for b in pairs.train_dataloader()) == len(pairs.pairs("train"))


def test_fewer_rollout_prompts_than_one_batch_is_a_clear_error(tok, tmp_path):
    cfg = config(write_jsonl(tmp_path / "p.jsonl", preference_rows()), batch_size=16)
    data = module(tok, cfg, "prompts")
    with pytest.raises(ValueError, match="data.batch_size: 16 rollout prompts"):
        data.train_dataloader()
