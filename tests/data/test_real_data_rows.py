"""Rows shaped like the public preference data sets, and the defects real data brings.

- ``HuggingFaceH4/ultrafeedback_binarized``: ``prompt`` a string, ``chosen`` / ``rejected`` the
  whole conversation as messages (user turn included), extra columns beside them;
- ``Anthropic/hh-rlhf``: ``chosen`` / ``rejected`` full texts of ``\\n\\nHuman:`` /
  ``\\n\\nAssistant:`` turns, some of which diverge before the final assistant turn;
- bad rows in a source without an eval split, and chat messages with a role no template knows.
"""

from __future__ import annotations

from typing import Any

import tokenizer_zoo
from leash.data.formats import RowKind


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
