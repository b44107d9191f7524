"""The `real_text_offline` preset's tokenizer: a byte-level BPE trained on the data, GPT-2 style."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from composing import composer
from leash.config import validate
from leash.models.tokenizers import END_OF_TEXT, build_bpe_tokenizer
from leash.pipeline.stages import Stages, training_texts

REPO = Path(__file__).resolve().parents[2]
HH_FILE = REPO / "experiments" / "data" / "hh_style.jsonl"
TEXTS = [t for line in HH_FILE.read_text().splitlines() for t in json.loads(line).values()]


@pytest.fixture(scope="module")
def saved_tokenizer(tmp_path_factory):
    """The BPE trained on the preset's file, saved and loaded back as a hub tokenizer would be."""
    folder = tmp_path_factory.mktemp("bpe")
    build_bpe_tokenizer(TEXTS, 1024).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def test_the_data_file_is_hh_style_and_small():
    assert HH_FILE.stat().st_size < 1_000_000
    rows = [json.loads(line) for line in HH_FILE.read_text().splitlines()]
    assert len(rows) == 397 and len(rows) % 8 and len(rows) % 16
    for row in rows:
        assert row["chosen"].startswith("\n\nHuman: ") and row["chosen"] != row["rejected"]
        cut = row["chosen"].rfind("\n\nAssistant:")
        assert row["rejected"][:cut] == row["chosen"][:cut]


@pytest.mark.parametrize(
    "text", [TEXTS[0], TEXTS[1], "Héllo wörld — ☕ 😀\n\n  two  spaces, a tab\tand ünïcode."]
)
def test_the_bpe_tokenizer_round_trips(saved_tokenizer, text):
    ids = saved_tokenizer(text)["input_ids"]
    assert saved_tokenizer.decode(ids) == text


def test_the_bpe_tokenizer_has_gpt2_conventions(saved_tokenizer):
    tokenizer = saved_tokenizer
    assert tokenizer.pad_token is None
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.unk_token == END_OF_TEXT
    assert tokenizer.all_special_tokens == [END_OF_TEXT]
    assert tokenizer.chat_template is None
    ids = tokenizer("Human: hello")["input_ids"]
    assert tokenizer.eos_token_id not in ids  # nothing prepended or appended on encode
    assert tokenizer.decode(ids) == "Human: hello"
    assert len(tokenizer) <= 1024
    assert len(tokenizer("\n\nAssistant: Sure, I would be happy to help")["input_ids"]) < 15


def test_training_is_deterministic():
    first, second = build_bpe_tokenizer(TEXTS, 512), build_bpe_tokenizer(TEXTS, 512)
    assert first.get_vocab() == second.get_vocab()


def stages_of(tmp_path: Path, *overrides: str) -> Stages:
    with composer(tmp_path / "run") as compose:
        cfg = compose(["experiment=real_text_offline", f"paths.cache_dir={tmp_path / 'cache'}",
                       *overrides])
        return Stages(validate(cfg))


def test_the_cache_key_follows_the_data_and_the_tokenizer_settings(tmp_path):
    copy = tmp_path / "elsewhere.jsonl"
    shutil.copy(HH_FILE, copy)
    base = stages_of(tmp_path).base_model_key()
    assert base == stages_of(tmp_path, "data.batch_size=4").base_model_key()
    others = [
        stages_of(tmp_path, f"data.path={copy}"),
        stages_of(tmp_path, "model.tiny.bpe_vocab_size=512"),
        stages_of(tmp_path, "model.tiny.tokenizer=auto"),
    ]
    keys = {base, *(stages.base_model_key() for stages in others)}
    assert len(keys) == 4


def test_the_preset_builds_a_tiny_gpt2_around_the_trained_tokenizer(tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(HH_FILE.read_text().splitlines(keepends=True)[:60]))
    stages = stages_of(tmp_path, f"data.path={small}", "model.tiny.bpe_vocab_size=600")
    assert sum(1 for _ in training_texts(stages.cfg.data)) == 120  # chosen + rejected
    folder = Path(stages.base_model_path)
    assert folder.parent.name == "base_model" and folder.name == stages.base_model_key()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "gpt2" and config.vocab_size == len(tokenizer) <= 600
    end = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    assert config.eos_token_id == config.bos_token_id == end
    assert config.pad_token_id is None and tokenizer.pad_token is None
    assert tokenizer.decode(tokenizer(TEXTS[0])["input_ids"]) == TEXTS[0]


def test_a_bpe_tokenizer_on_a_built_in_task_is_refused(tmp_path):
    stages = stages_of(tmp_path, "data=exact")
    with pytest.raises(ValueError, match="model.tiny.tokenizer"):
        stages.tiny_tokenizer()
