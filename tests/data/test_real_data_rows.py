"""Rows shaped like the public preference data sets, and the defects real data brings.

- ``HuggingFaceH4/ultrafeedback_binarized``: ``prompt`` a string, ``chosen`` / ``rejected`` the
  whole conversation as messages (user turn included), extra columns beside them;
- ``Anthropic/hh-rlhf``: ``chosen`` / ``rejected`` full texts of ``\\n\\nHuman:`` /
  ``\\n\\nAssistant:`` turns, some of which diverge before the final assistant turn;
- bad rows in a source without an eval split, and chat messages with a role no template knows.
"""

from __future__ import annotations

from typing import Any

import pytest

import tokenizer_zoo
from leash.config import BadRows, Truncation
from leash.data.formats import BadReason, RowKind, split_implicit


def message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def all_pairs(module):
    """Kept pairs of both splits, in source order."""
    return sorted(module.pairs("train") + module.pairs("eval"), key=lambda row: row.source_index)


# ------------------------------------------------------------------------- UltraFeedback
def ultrafeedback_row(k: int, turns: list[dict[str, str]], good: str, bad: str) -> dict[str, Any]:
    """A row as ``ultrafeedback_binarized`` stores it: the conversation repeated in both answers."""
    chosen = [*turns, message("assistant", good)]
    return {
        "prompt": turns[-1]["content"],
        "prompt_id": f"{k:064x}",
        "chosen": chosen,
        "rejected": [*turns, message("assistant", bad)],
        "messages": chosen,
        "score_chosen": 8.0,
        "score_rejected": 3.5,
    }


def test_ultrafeedback_rows_split_at_the_final_assistant_message(tmp_path):
    tokenizer = tokenizer_zoo.chatml_like()
    history = [message("user", "Hello"), message("assistant", "Hello, how can I help?")]
    questions = ["Why is the sky blue?", "How do I make tea?", "Tell me about the moon."]
    rows = [
        ultrafeedback_row(k, [message("user", q)], "Because of the light.", "No idea.")
        for k, q in enumerate(questions)
    ]
    rows.append(ultrafeedback_row(3, [*history, message("user", "Thanks!")], "Gladly.", "Bye."))
    module = tokenizer_zoo.data_module(tokenizer, rows, tmp_path)
    assert module.kind == RowKind.conversational
    assert module.bad_rows.total == 0
    pairs = all_pairs(module)
    assert [row.source_index for row in pairs] == [0, 1, 2, 3]
    for row in pairs:
        raw = rows[row.source_index]
        prompt = tokenizer.apply_chat_template(
            raw["chosen"][:-1], add_generation_prompt=True, tokenize=False
        )
        assert tokenizer.decode(row.prompt_ids) == row.prompt == prompt
        assert tokenizer.decode(row.chosen_ids) == raw["chosen"][-1]["content"] + "<|im_end|>"
        assert tokenizer.decode(row.rejected_ids) == raw["rejected"][-1]["content"] + "<|im_end|>"
    assert pairs[3].prompt.startswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")


def test_ultrafeedback_rows_whose_conversations_disagree_are_bad(tmp_path):
    tokenizer = tokenizer_zoo.chatml_like()
    turns = [message("user", "Why is the sky blue?")]
    good = [
        ultrafeedback_row(k, [message("user", f"Question {k}?")], "Yes.", "No.") for k in range(4)
    ]
    diverges = ultrafeedback_row(4, turns, "Yes.", "No.")
    diverges["rejected"][0] = message("user", "Why is the sea blue?")
    ends_with_user = ultrafeedback_row(5, turns, "Yes.", "No.")
    ends_with_user["chosen"][-1] = message("user", "Yes.")
    module = tokenizer_zoo.data_module(tokenizer, [*good, diverges, ends_with_user], tmp_path)
    assert [row.source_index for row in all_pairs(module)] == [0, 1, 2, 3]
    assert module.bad_rows.count(BadReason.unparseable) == 1
    assert module.bad_rows.count(BadReason.diverges_before_last_turn) == 1


# -------------------------------------------------------------------------------- HH-RLHF
def hh(*turns: str) -> str:
    """HH-RLHF text: alternating Human / Assistant turns."""
    names = ("Human", "Assistant")
    return "".join(f"\n\n{names[k % 2]}: {turn}" for k, turn in enumerate(turns))


def test_hh_rows_that_diverge_before_the_last_turn_are_counted_not_kept(tmp_path):
    tokenizer = tokenizer_zoo.gpt2_pad_eos()
    good = [
        {
            "chosen": hh(f"Question {k}?", "A helpful answer."),
            "rejected": hh(f"Question {k}?", "No."),
        }
        for k in range(4)
    ]
    diverges = {
        "chosen": hh("Hi", "Hello, how can I help?", "Why is the sky blue?", "Scattering."),
        "rejected": hh("Hi", "Go away.", "Why is the sky blue?", "No idea."),
    }
    module = tokenizer_zoo.data_module(tokenizer, [*good, diverges], tmp_path)
    assert module.kind == RowKind.implicit
    pairs = all_pairs(module)
    for row in pairs:
        for ids in (row.chosen_ids, row.rejected_ids):
            assert "Human:" not in tokenizer.decode(ids)
    assert [row.source_index for row in pairs] == [0, 1, 2, 3]
    assert module.bad_rows.count(BadReason.diverges_before_last_turn) == 1
    assert split_implicit(diverges["chosen"], diverges["rejected"]) == (
        BadReason.diverges_before_last_turn
    )
    # Diverging inside the final assistant turn is the normal case.
    assert split_implicit(hh("Hi", "Hello", "Why?", "Yes."), hh("Hi", "Hello", "Why?", "No.")) == (
        hh("Hi", "Hello", "Why?") + "\n\nAssistant:",
        " Yes.",
        " No.",
    )


# ------------------------------------------------------------------------- carved eval split
@pytest.mark.parametrize("seed", range(4))
def test_bad_rows_take_no_eval_slots_and_are_still_reported(seed, tmp_path):
    """4 good prompts (2 pairs each) and 12 bad rows; 25% of the good prompts are held out."""
    good = [
        {"prompt": f"Question {k}?", "chosen": f" Answer {j}.", "rejected": " No."}
        for k in range(4)
        for j in range(2)
    ]
    missing = [{"prompt": f"Lost {k}?", "chosen": None, "rejected": " No."} for k in range(6)]
    too_long = [
        {"prompt": f"Long {k}: " + "words " * 40, "chosen": " Yes.", "rejected": " No."}
        for k in range(6)
    ]
    module = tokenizer_zoo.data_module(
        tokenizer_zoo.gpt2_pad_eos(),
        [*good, *missing, *too_long],
        tmp_path,
        seed=seed,
        truncation=Truncation.drop,
        max_prompt_length=16,
    )
    train, evals = module.bad_rows.splits
    assert evals.rows_read == evals.rows_kept == 2  # one held-out prompt, both of its pairs
    assert len(module.eval_prompts()) == 1 and len(module.train_prompts()) == 3
    assert (train.rows_read, train.rows_kept) == (18, 6)  # the 12 bad rows are counted in train
    assert module.bad_rows.count(BadReason.missing_field) == 6
    assert module.bad_rows.count(BadReason.over_length) == 6


# ----------------------------------------------------------------------------- chat roles
def test_unknown_chat_role_is_a_bad_row(tmp_path):
    tokenizer = tokenizer_zoo.chatml_like()
    rows = [
        {"prompt": [message("system", "Be brief."), message("user", f"Question {k}?")],
         "chosen": [message("assistant", "Yes.")], "rejected": [message("assistant", "No.")]}
        for k in range(4)
    ]  # fmt: skip
    rows.append({**rows[0], "prompt": [message("wizard", "Cast a spell."), *rows[0]["prompt"]]})
    module = tokenizer_zoo.data_module(tokenizer, rows, tmp_path)
    assert [row.source_index for row in all_pairs(module)] == [0, 1, 2, 3]
    assert module.bad_rows.count(BadReason.unknown_role) == 1
    with pytest.raises(ValueError, match="unknown_role=1"):
        tokenizer_zoo.data_module(tokenizer, rows, tmp_path, bad_rows=BadRows.error)
