"""The data path under real tokenizers' conventions: pad = EOS, a prepended BOS, ChatML turns,
and special-token text that occurs inside the data itself.

Expectations are built from the tokenizer's own pieces (its ids for BOS/EOS, its rendering of
the chat template) and checked token by token or by decoding.
"""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoTokenizer

import tokenizer_zoo
from leash.config import ModelConfig
from leash.data.formats import BadReason
from leash.models.factory import load_tokenizer
from leash.models.tokenizers import build_byte_tokenizer
from leash.sequences import IGNORE_INDEX

PROMPT = "\n\nHuman: {}\n\nAssistant:"
QUESTIONS = [
    "Why is the sky blue?",
    "How do I make tea?",
    "Write a short poem about the sea.",
    "Tell me more about the moon.",
]


def explicit_rows() -> list[dict[str, str]]:
    """HH-style explicit rows whose responses differ in length, so batches need padding."""
    return [
        {
            "prompt": PROMPT.format(question),
            "chosen": " Because" + " of the light" * (1 + k % 3) + ".",
            "rejected": " No.",
        }
        for k, question in enumerate(QUESTIONS * 2)
    ]


def message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# ------------------------------------------------------------------------------------- the zoo
@pytest.mark.parametrize("name", sorted(tokenizer_zoo.ZOO))
def test_zoo_tokenizers_round_trip_through_save_pretrained(name, tmp_path):
    tokenizer = tokenizer_zoo.ZOO[name]()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = tokenizer_zoo.CORPUS[:300] + "<|im_end|>"
    assert loaded(text).input_ids == tokenizer(text).input_ids
    assert loaded.decode(loaded(text, add_special_tokens=False).input_ids) == text
    for attribute in ("bos_token", "eos_token", "pad_token", "unk_token", "chat_template"):
        assert getattr(loaded, attribute) == getattr(tokenizer, attribute), attribute


def test_zoo_conventions(tmp_path):
    gpt2 = tokenizer_zoo.gpt2_like()
    assert gpt2.bos_token == gpt2.eos_token == gpt2.unk_token == "<|endoftext|>"
    assert gpt2.pad_token is None and gpt2.chat_template is None
    assert gpt2("the sea").input_ids == gpt2("the sea", add_special_tokens=False).input_ids
    llama = tokenizer_zoo.llama_like()
    assert (llama.bos_token, llama.eos_token, llama.pad_token) == ("<s>", "</s>", None)
    assert llama("the sea").input_ids[0] == llama.bos_token_id
    chatml = tokenizer_zoo.chatml_like()
    assert (chatml.eos_token, chatml.pad_token, chatml.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    assert chatml.apply_chat_template([message("user", "hi")], tokenize=False) == (
        "<|im_start|>user\nhi<|im_end|>\n"
    )
    # gpt2_pad_eos is what the model factory makes of a GPT-2 tokenizer.
    gpt2.save_pretrained(tmp_path)
    factory = load_tokenizer(str(tmp_path), ModelConfig())
    padded = tokenizer_zoo.gpt2_pad_eos()
    assert (factory.pad_token, factory.eos_token) == (padded.pad_token, padded.eos_token)
    assert factory.pad_token_id == padded.pad_token_id == padded.eos_token_id


# ------------------------------------------------------------------------------- pad = EOS
def _check_ends_with_a_real_eos(ids, mask, labels, prompt_len: int, response: list[int], eos):
    """One padded row: the response (ending with EOS) is attended and labelled, padding not."""
    end = prompt_len + len(response)
    assert response[-1] == eos and ids[end - 1] == eos
    assert mask == [1] * end + [0] * (len(ids) - end)
    assert labels == [IGNORE_INDEX] * prompt_len + response + [IGNORE_INDEX] * (len(ids) - end)


@pytest.mark.parametrize("name", sorted(tokenizer_zoo.ZOO))
def test_response_eos_is_attended_and_labelled_padding_is_not(name, tmp_path):
    tokenizer = tokenizer_zoo.ZOO[name]()
    eos = tokenizer.eos_token_id
    pairs = tokenizer_zoo.data_module(tokenizer, explicit_rows(), tmp_path, eval_fraction=0.5)
    batch = next(iter(pairs.val_dataloader()))
    padded = 0
    for b, row in enumerate(pairs.pairs("eval")):
        for side in ("chosen", "rejected"):
            ids = getattr(batch, f"{side}_input_ids")[b].tolist()
            mask = getattr(batch, f"{side}_attention_mask")[b].tolist()
            labels = getattr(batch, f"{side}_labels")[b].tolist()
            response = getattr(row, f"{side}_ids")
            _check_ends_with_a_real_eos(ids, mask, labels, len(row.prompt_ids), response, eos)
            padded += mask[-1] == 0
    assert padded > 0  # some rows were padded, with pad_id == EOS for the gpt2 tokenizers
    sft = tokenizer_zoo.data_module(tokenizer, explicit_rows(), tmp_path, "sft", eval_fraction=0.5)
    batch = next(iter(sft.val_dataloader()))
    for b, row in enumerate(sft.sft_rows("eval")):
        ids, mask, labels = batch.input_ids[b], batch.attention_mask[b], batch.labels[b]
        _check_ends_with_a_real_eos(
            ids.tolist(), mask.tolist(), labels.tolist(), len(row.prompt_ids), row.response_ids, eos
        )


# ------------------------------------------------------------------------------------- BOS
def test_llama_bos_once_at_the_prompt_start_never_in_responses(tmp_path):
    tokenizer = tokenizer_zoo.llama_like()
    bos = tokenizer.bos_token_id
    long = {"prompt": PROMPT.format("Tell me about the sea " * 20), "chosen": " Yes.",
            "rejected": " No."}  # fmt: skip
    pairs = tokenizer_zoo.data_module(
        tokenizer, [*explicit_rows(), long], tmp_path, max_prompt_length=24, max_length=64
    )
    rows = pairs.pairs("train") + pairs.pairs("eval")
    for row in rows:
        assert row.prompt_ids[0] == bos and row.prompt_ids.count(bos) == 1
        assert bos not in row.chosen_ids + row.rejected_ids
    # The long prompt is cut on the left: BOS, then its last 23 tokens.
    (cut,) = [row for row in rows if row.prompt == long["prompt"]]
    assert cut.prompt_ids == [bos, *tokenizer(long["prompt"]).input_ids[-23:]]
    # A chat template that writes the BOS itself (as Llama's do) gets no second one.
    tokenizer.chat_template = "{{ bos_token }}" + tokenizer_zoo.CHATML_TEMPLATE
    conversational = [
        {"prompt": [message("user", question)], "chosen": [message("assistant", "Yes.")],
         "rejected": [message("assistant", "No.")]}
        for question in QUESTIONS
    ]  # fmt: skip
    chat = tokenizer_zoo.data_module(tokenizer, conversational, tmp_path)
    for row in chat.pairs("train") + chat.pairs("eval"):
        assert row.prompt_ids[0] == bos and row.prompt_ids.count(bos) == 1
        assert bos not in row.chosen_ids + row.rejected_ids


# ---------------------------------------------------------------------------------- ChatML
def chatml_rows() -> list[dict[str, Any]]:
    """Explicit and implicit conversational rows, one with a system turn, one multi-turn."""
    system = message("system", "Be brief and kind.")
    history = [message("user", "Hello"), message("assistant", "Hello, how can I help?")]
    return [
        {"prompt": [system, message("user", QUESTIONS[0])],
         "chosen": [message("assistant", "Because of the light.")],
         "rejected": [message("assistant", "No idea.")]},
        {"prompt": [*history, message("user", QUESTIONS[1])],
         "chosen": [message("assistant", "Boil fresh water.")],
         "rejected": [message("assistant", "Ask someone else.")]},
        *({"prompt": [message("user", question)],
           "chosen": [message("assistant", "Yes, gladly.")],
           "rejected": [message("assistant", "No.")]} for question in QUESTIONS[2:]),
    ]  # fmt: skip


def test_chatml_prompt_response_split_is_exact(tmp_path):
    tokenizer = tokenizer_zoo.chatml_like()
    source = chatml_rows()
    pairs = tokenizer_zoo.data_module(tokenizer, source, tmp_path)
    rows = pairs.pairs("train") + pairs.pairs("eval")
    assert sorted(row.source_index for row in rows) == list(range(len(source)))
    for row in rows:
        raw = source[row.source_index]
        prompt = tokenizer.apply_chat_template(
            raw["prompt"], add_generation_prompt=True, tokenize=False
        )
        assert tokenizer.decode(row.prompt_ids) == prompt
        assert row.prompt_ids == tokenizer(prompt, add_special_tokens=False).input_ids
        for side in ("chosen", "rejected"):
            answer = raw[side][0]
            response = getattr(row, f"{side}_ids")
            assert tokenizer.decode(response) == answer["content"] + "<|im_end|>"
            assert response.count(tokenizer.eos_token_id) == 1 and response[-1] == (
                tokenizer.eos_token_id
            )
            full = tokenizer.apply_chat_template([*raw["prompt"], answer], tokenize=False)
            assert full == tokenizer.decode(row.prompt_ids + response) + "\n"


# ------------------------------------------------------------------- special-token text
@pytest.mark.parametrize(
    ("build", "literal"),
    [(tokenizer_zoo.gpt2_like, "<|endoftext|>"), (build_byte_tokenizer, "<|eos|>"),
     (build_byte_tokenizer, "<|bos|>")],
)  # fmt: skip
def test_special_token_text_in_data_is_plain_text(build, literal, tmp_path):
    tokenizer = build()
    rows = explicit_rows()
    rows[0] = {"prompt": PROMPT.format(f"What does {literal} mean?"),
               "chosen": f" It is {literal} written out.", "rejected": f"{literal}"}  # fmt: skip
    rows[1] = {**rows[1], "prompt": literal + rows[1]["prompt"]}
    pairs = tokenizer_zoo.data_module(tokenizer, rows, tmp_path)
    specials = set(tokenizer.all_special_ids)
    kept = {row.source_index: row for row in pairs.pairs("train") + pairs.pairs("eval")}
    assert sorted(kept) == list(range(len(rows)))
    adds_bos = tokenizer("x").input_ids[0] == tokenizer.bos_token_id  # byte: yes, GPT-2: no
    bos = [tokenizer.bos_token_id] if adds_bos else []
    for index in (0, 1):
        row, raw = kept[index], rows[index]
        assert row.prompt_ids[: len(bos)] == bos
        assert not specials & set(row.prompt_ids[len(bos) :])
        assert tokenizer.decode(row.prompt_ids[len(bos) :]) == raw["prompt"]
        for side in ("chosen", "rejected"):
            response = getattr(row, f"{side}_ids")
            assert response[-1] == tokenizer.eos_token_id
            assert not specials & set(response[:-1])
            assert tokenizer.decode(response[:-1]) == raw[side]


def test_special_token_text_in_chat_messages(tmp_path):
    """An answer is plain text; a prompt message cannot be: its rendering mixes the template's
    own special tokens with the content, so such a row is dropped as ``special_token_text``."""
    tokenizer = tokenizer_zoo.chatml_like()
    rows = chatml_rows()
    rows[0]["chosen"] = [message("assistant", "Write <|im_end|> to stop.")]
    rows[1]["prompt"][-1] = message("user", "What does <|im_start|> mean?")
    pairs = tokenizer_zoo.data_module(tokenizer, rows, tmp_path)
    kept = {row.source_index: row for row in pairs.pairs("train") + pairs.pairs("eval")}
    response = kept[0].chosen_ids
    assert response.count(tokenizer.eos_token_id) == 1 and response[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(response) == "Write <|im_end|> to stop.<|im_end|>"
    assert sorted(kept) == [0, 2, 3]
    assert pairs.bad_rows.count(BadReason.special_token_text) == 1
