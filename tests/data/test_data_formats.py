"""Row formats, the prompt/response split, bad-row checks and truncation, checked token by token.

A word-level tokenizer makes the expected ids readable: ids 0-3 are pad/bos/eos/unk and word k
of ``WORDS`` is id 4 + k, so every expectation below is built by hand from the words.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from leash.config import BadRows, DataConfig, DataSource, RowFormat, Truncation
from leash.data.datamodule import PreferenceDataModule
from leash.data.encoding import Budget, EncodedPair, RowEncoder
from leash.data.formats import (
    BadReason,
    PreferenceRow,
    RowKind,
    normalise,
    resolve_kind,
    split_implicit,
)
from leash.models.tokenizers import build_word_tokenizer

WORDS = [
    "Human:", "Assistant:", "[user]", "[assistant]", "[system]",
    "hi", "hello", "more", "I", "agree", "refuse", "yes", "no", "why", "because", "be", "brief",
    *[f"w{i}" for i in range(12)],
]  # fmt: skip
BOS, EOS = 1, 2


def ids(*words: str) -> list[int]:
    """Hand-built token ids of whitespace-separated words."""
    return [4 + WORDS.index(word) for text in words for word in text.split()]


@pytest.fixture(scope="module")
def tok():
    return build_word_tokenizer(WORDS)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def load(tok, path: str, **overrides: Any) -> PreferenceDataModule:
    cfg = DataConfig(name="test", source=DataSource.files, path=path, eval_fraction=0.5)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    module = PreferenceDataModule(cfg, tok, view="pairs", seed=0)
    module.setup()
    return module


def all_pairs(module: PreferenceDataModule) -> list[EncodedPair]:
    """Kept pairs of both splits, in source order."""
    rows = module.pairs("train") + module.pairs("eval")
    return sorted(rows, key=lambda row: row.source_index)


# ---------------------------------------------------------------------------------- formats
def test_explicit_jsonl_split_token_by_token(tok, tmp_path):
    path = write_jsonl(
        tmp_path / "explicit.jsonl",
        [
            {"prompt": "hi why", "chosen": " yes because", "rejected": "no"},
            {"prompt": "hello", "chosen": "I agree", "rejected": "I refuse"},
        ],
    )
    module = load(tok, path)
    assert module.kind == RowKind.explicit
    first, second = all_pairs(module)
    assert first.prompt_ids == [BOS, *ids("hi why")]
    assert first.chosen_ids == [*ids("yes because"), EOS]
    assert first.rejected_ids == [*ids("no"), EOS]
    assert second.prompt_ids == [BOS, *ids("hello")]
    assert second.chosen_ids == [*ids("I agree"), EOS]
    assert second.rejected_ids == [*ids("I refuse"), EOS]


def test_implicit_hh_json_splits_at_last_shared_assistant_marker(tok, tmp_path):
    context = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: why\n\nAssistant:"
    short = "\n\nHuman: more\n\nAssistant:"
    rows = [
        # The texts still agree on " I " after the marker: the split backs off to the marker.
        {"chosen": context + " I agree", "rejected": context + " I refuse"},
        {"chosen": short + " yes", "rejected": short + " no"},
    ]
    path = tmp_path / "hh.json"
    path.write_text(json.dumps(rows))
    module = load(tok, str(path))
    assert module.kind == RowKind.implicit
    first, second = all_pairs(module)
    assert first.prompt == context
    assert first.prompt_ids == [BOS, *ids("Human: hi Assistant: hello Human: why Assistant:")]
    assert first.chosen_ids == [*ids("I agree"), EOS]
    assert first.rejected_ids == [*ids("I refuse"), EOS]
    assert second.prompt_ids == [BOS, *ids("Human: more Assistant:")]
    assert (second.chosen_ids, second.rejected_ids) == ([*ids("yes"), EOS], [*ids("no"), EOS])


def test_split_implicit_texts_and_unparseable():
    assert split_implicit("\n\nHuman: a\n\nAssistant: b", "\n\nHuman: a\n\nAssistant: c") == (
        "\n\nHuman: a\n\nAssistant:",
        " b",
        " c",
    )
    # A marker that is only partly shared does not count.
    assert split_implicit("Human: a\n\nAssistant: b", "Human: a\n\nAssist c") == (
        BadReason.unparseable
    )


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def test_conversational_explicit_and_implicit_render_with_chat_template(tok, tmp_path):
    explicit = write_jsonl(
        tmp_path / "conv_explicit.jsonl",
        [
            {
                "prompt": [_message("system", "be brief"), _message("user", "hi")],
                "chosen": [_message("assistant", "hello")],
                "rejected": [_message("assistant", "no")],
            },
            {
                "prompt": [_message("user", "why")],
                "chosen": [_message("assistant", "because")],
                "rejected": [_message("assistant", "I refuse")],
            },
        ],
    )
    module = load(tok, explicit)
    assert module.kind == RowKind.conversational
    first, second = all_pairs(module)
    assert first.prompt == "[system] be brief\n[user] hi\n[assistant] "
    assert first.prompt_ids == [BOS, *ids("[system] be brief [user] hi [assistant]")]
    assert first.chosen_ids == [*ids("hello"), EOS]
    assert first.rejected_ids == [*ids("no"), EOS]
    assert second.prompt_ids == [BOS, *ids("[user] why [assistant]")]

    shared = [_message("user", "hi"), _message("assistant", "hello"), _message("user", "why")]
    implicit = write_jsonl(
        tmp_path / "conv_implicit.jsonl",
        [
            {
                "chosen": [*shared, _message("assistant", "because")],
                "rejected": [*shared, _message("assistant", "no")],
            },
            {
                "chosen": [_message("user", "more"), _message("assistant", "yes")],
                "rejected": [_message("user", "more"), _message("assistant", "no")],
            },
        ],
    )
    first, second = all_pairs(load(tok, implicit))
    assert first.prompt_ids == [BOS, *ids("[user] hi [assistant] hello [user] why [assistant]")]
    assert first.chosen_ids == [*ids("because"), EOS]
    assert first.rejected_ids == [*ids("no"), EOS]
    assert second.prompt_ids == [BOS, *ids("[user] more [assistant]")]


def test_chat_template_that_writes_bos_gets_no_second_bos(tmp_path):
    tok = build_word_tokenizer(WORDS)
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    row = {
        "prompt": [_message("user", "hi")],
        "chosen": [_message("assistant", "yes")],
        "rejected": [_message("assistant", "no")],
    }
    path = write_jsonl(tmp_path / "conv.jsonl", [row, {**row, "prompt": [_message("user", "why")]}])
    first, _ = all_pairs(load(tok, path))
    assert first.prompt_ids == [BOS, *ids("[user] hi [assistant]")]


def test_auto_detection():
    def kind(fmt: RowFormat, row: dict[str, Any]) -> RowKind:
        return resolve_kind(fmt, list(row), row)

    auto = RowFormat.auto
    assert kind(auto, {"prompt": "a", "chosen": "b", "rejected": "c"}) == RowKind.explicit
    assert kind(auto, {"chosen": "a b", "rejected": "a c"}) == RowKind.implicit
    assert kind(auto, {"chosen": [_message("user", "a")], "rejected": []}) == (
        RowKind.conversational
    )
    assert kind(auto, {"prompt": "a", "response": "b"}) == RowKind.sft
    assert kind(RowFormat.explicit, {"prompt": "a", "response": "b"}) == RowKind.sft
    assert kind(RowFormat.implicit, {"prompt": "a", "chosen": "b", "rejected": "c"}) == (
        RowKind.implicit
    )
    with pytest.raises(ValueError, match="cannot detect"):
        kind(auto, {"text": "a"})


def test_carried_columns_and_their_defects(tok):
    row = {"prompt": "a", "chosen": "b", "rejected": "c", "chosen_gold_reward": 0.5}
    normalised = normalise(row, RowKind.explicit, tok)
    assert isinstance(normalised, PreferenceRow)
    assert normalised.scores.chosen_gold_reward == 0.5
    assert normalised.scores.rejected_gold_reward is None
    bad = normalise({**row, "chosen_gold_reward": "high"}, RowKind.explicit, tok)
    assert bad == BadReason.unparseable


def test_ended_flags_decide_the_eos(tok, tmp_path):
    """Task data marks cut responses (no EOS) and allows an answer that is EOS alone."""
    path = write_jsonl(
        tmp_path / "task_pairs.jsonl",
        [
            {"prompt": "hi", "chosen": "yes no", "rejected": "", "chosen_ended": False,
             "rejected_ended": True},
            {"prompt": "why", "chosen": "yes", "rejected": "yes", "chosen_ended": True,
             "rejected_ended": False},
            {"prompt": "more", "chosen": "yes", "rejected": "", "chosen_ended": True,
             "rejected_ended": False},
        ],
    )  # fmt: skip
    module = load(tok, path)
    first, second = all_pairs(module)
    assert (first.chosen_ids, first.rejected_ids) == (ids("yes no"), [EOS])
    assert (second.chosen_ids, second.rejected_ids) == ([*ids("yes"), EOS], ids("yes"))
    assert module.bad_rows.count(BadReason.empty_response) == 1  # cut with no token at all
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl",
        [{"prompt": f"w{k}", "response": "yes no", "ended": k % 2 == 0} for k in range(4)],
    )
    cfg = DataConfig(name="corpus", source=DataSource.files, path=corpus, eval_fraction=0.5)
    sft = PreferenceDataModule(cfg, tok, view="sft")
    sft.setup()
    rows = sorted(sft.sft_rows("train") + sft.sft_rows("eval"), key=lambda r: r.source_index)
    assert [row.response_ids for row in rows] == [[*ids("yes no"), EOS], ids("yes no")] * 2


# --------------------------------------------------------------------------------- bad rows
def _defect_lines() -> list[bytes]:
    """JSON lines of conversational rows: ten good ones, then one per defect in BadReason order
    (rows 10...), the last two not readable as rows at all."""

    def row(prompt: str, chosen: str | None, rejected: str, role: str = "assistant") -> dict:
        return {
            "prompt": [_message("user", prompt)] if prompt else [],
            "chosen": None if chosen is None else [_message("assistant", chosen)],
            "rejected": [_message(role, rejected)],
        }

    good = [row(f"w{i}", "yes", "no") for i in range(10)]
    long = " ".join(f"w{i}" for i in range(12))
    records = [
        *good,
        row("hi", None, "no"),  # missing_field
        row("hi", "yes", "no", role="user"),  # unparseable: the answer is not the assistant's
        row("", "yes", "no"),  # empty_prompt
        row("hi", "yes", "  "),  # empty_response
        row("hi", "yes", "yes"),  # identical_responses
        row(long, "yes", "no"),  # over_length (drop policy)
        {  # diverges_before_last_turn: whole conversations that differ in the user turn
            "prompt": None,
            "chosen": [_message("user", "hi"), _message("assistant", "yes")],
            "rejected": [_message("user", "why"), _message("assistant", "no")],
        },
        row("hi", "yes", "no", role="wizard"),  # unknown_role
        row("hi <|eos|>", "yes", "no"),  # special_token_text: a prompt message holds the EOS text
        {"prompt": [_message("user", "hi")], "chosen": 5, "rejected": 6},  # not_text
    ]
    return [
        *(json.dumps(record).encode() for record in records),
        b'{"prompt": "hi", "chosen": "yes", "rejected": ',  # malformed_json: cut short
        '{"prompt": "caf\u00e9"}'.encode("latin-1"),  # not_utf8
    ]


def write_lines(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def test_one_row_per_defect_gives_one_count_per_reason(tok, tmp_path, caplog):
    path = write_lines(tmp_path / "defects.jsonl", _defect_lines())
    with caplog.at_level(logging.INFO, logger="leash.data"):
        module = load(tok, path, truncation=Truncation.drop, max_prompt_length=8, max_length=12)
    assert f"skipping {len(BadReason)} bad rows" in caplog.text
    assert "train: kept" in caplog.text and "eval: kept" in caplog.text
    report = module.bad_rows
    for reason in BadReason:
        assert report.count(reason) == 1, reason
    assert report.total == len(BadReason)
    assert sum(s.rows_kept for s in report.splits) == 10
    assert sum(s.rows_read for s in report.splits) == 10 + len(BadReason)
    first_rows = {reason: s.first_index[reason] for s in report.splits for reason in s.counts}
    assert first_rows == {reason: 10 + k for k, reason in enumerate(BadReason)}
    assert "kept" in report.summary()


def test_bad_rows_error_names_the_reasons(tok, tmp_path):
    path = write_lines(tmp_path / "defects.jsonl", _defect_lines())
    with pytest.raises(ValueError) as raised:
        load(
            tok,
            path,
            truncation=Truncation.drop,
            max_prompt_length=8,
            max_length=12,
            bad_rows=BadRows.error,
        )
    message = str(raised.value)
    for reason in BadReason:
        assert reason.value in message
    assert "over_length=1 (first: row 15" in message


# ------------------------------------------------------------------------------- truncation
def _encoder(tok, truncation: Truncation) -> RowEncoder:
    return RowEncoder(tok, Budget(max_length=7, max_prompt_length=4, truncation=truncation))


def test_truncate_prompt_left_keeps_bos_then_cuts_responses(tok):
    encoder = _encoder(tok, Truncation.truncate_prompt_left)
    long_prompt = " ".join(f"w{i}" for i in range(10))
    row = PreferenceRow(long_prompt, "yes because I agree", "no")
    (encoded,), report = encoder.encode_split("train", "train", [(0, row)])
    assert report.rows_dropped == 0
    assert encoded.prompt_ids == [BOS, *ids("w7 w8 w9")]
    assert encoded.chosen_ids == ids("yes because I")  # cut at max_length: no EOS
    assert encoded.rejected_ids == [*ids("no"), EOS]


def test_truncation_can_make_responses_identical(tok):
    encoder = _encoder(tok, Truncation.truncate_prompt_left)
    row = PreferenceRow("hi", "yes because I agree more w0", "yes because I agree more w1")
    kept, report = encoder.encode_split("train", "train", [(3, row)])
    assert kept == []
    assert report.counts[BadReason.identical_responses] == 1
    assert report.first_index[BadReason.identical_responses] == 3


def test_drop_policy_drops_the_long_row(tok):
    encoder = _encoder(tok, Truncation.drop)
    long_prompt = " ".join(f"w{i}" for i in range(10))
    rows = [
        (0, PreferenceRow(long_prompt, "yes", "no")),
        (1, PreferenceRow("hi", "yes because I agree more", "no")),
        (2, PreferenceRow("hi", "yes", "no")),
    ]
    kept, report = encoder.encode_split("train", "train", rows)
    assert [row.source_index for row in kept] == [2]
    assert kept[0].index == 0
    assert report.counts[BadReason.over_length] == 2
    assert report.first_index[BadReason.over_length] == 0
