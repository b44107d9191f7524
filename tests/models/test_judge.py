"""The judge scores decoded text in its own tokenizer and chat format, exactly as the model does."""

from __future__ import annotations

import pytest
import torch

from helpers import JUDGE_PROMPTS as PROMPTS
from helpers import JUDGE_RESPONSES as RESPONSES
from helpers import direct_score, save_judge
from leash.models.judge import Judge, conversation
from tokenizer_zoo import chatml_like, llama_like


def test_hh_prompts_become_chat_turns():
    assert conversation(PROMPTS[1], RESPONSES[1]) == [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Write a poem about the sea."},
        {"role": "assistant", "content": "The sea is wide."},
    ]
    assert conversation(PROMPTS[2], RESPONSES[2]) == [
        {"role": "user", "content": "Tell me about the moon."},
        {"role": "assistant", "content": "It reflects light."},
    ]


def test_a_chat_judge_scores_each_text_in_its_chat_format(tmp_path):
    folder = save_judge(chatml_like(), tmp_path / "judge")
    judge = Judge.load(str(folder), batch_size=2)  # padded batches of different lengths
    scores = judge.score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
        text = judge.tokenizer.apply_chat_template(conversation(prompt, response), tokenize=False)
        assert "<|im_start|>assistant" in text
        assert scores[i].item() == pytest.approx(direct_score(folder, text, False), abs=1e-5)
    assert scores.dtype == torch.float64 and len(set(scores.tolist())) == 3


def test_a_plain_judge_reads_prompt_plus_response_with_its_own_bos(tmp_path):
    folder = save_judge(llama_like(), tmp_path / "judge")
    judge = Judge.load(str(folder), batch_size=3)
    scores = judge.score(PROMPTS, RESPONSES)
    assert judge.encode(PROMPTS[0], RESPONSES[0])[0] == judge.tokenizer.bos_token_id
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES, strict=True)):
        assert scores[i].item() == pytest.approx(
            direct_score(folder, prompt + response, True), abs=1e-5
        )
