"""GPT-2's convention, pad = EOS: the EOS a response ends with is still a real token for
generation stopping, the log-probs behind the loss and the KL, and the reward read-out."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from leash.models.heads import score_sequences
from leash.models.logprobs import response_token_logps
from leash.rollout.generation import generate
from leash.sequences import left_pad
from tokenizer_zoo import gpt2_pad_eos

TOKENIZER = gpt2_pad_eos()
EOS = TOKENIZER.eos_token_id


def eos_loving_lm(seed: int = 0) -> GPT2LMHeadModel:
    """A tiny GPT-2 whose EOS logit is raised, so that most samples end early with EOS."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(TOKENIZER), n_embd=32, n_layer=1,
                                       n_head=2, n_positions=64)).eval()
    ids = torch.tensor([TOKENIZER("Hello there, the sea is wide")["input_ids"]])
    with torch.no_grad():  # point EOS's (tied) embedding along the typical final hidden state
        hidden = model.transformer(ids).last_hidden_state.mean(dim=(0, 1))
        model.lm_head.weight[EOS] = 6.0 * hidden / hidden.square().sum()
    return model


def test_generation_stops_at_eos_keeps_it_in_the_mask_and_pads_after():
    assert TOKENIZER.pad_token_id == EOS
    prompts = [TOKENIZER("Hello there")["input_ids"], TOKENIZER("The sea")["input_ids"]] * 8
    ids, mask = left_pad(prompts, EOS)
    response, response_mask, _ = generate(eos_loving_lm(), ids, mask, 6, EOS, EOS,
                                       generator=torch.Generator().manual_seed(0))
    ended = 0
    for row, row_mask in zip(response.tolist(), response_mask.tolist(), strict=True):
        length = sum(row_mask)
        assert row_mask == [1] * length + [0] * (len(row) - length)  # real tokens, then padding
        if EOS in row[:length]:
            ended += 1
            assert row.index(EOS) == length - 1  # stopped at the first EOS, which is real
    assert 0 < ended < len(prompts)  # both kinds occur


def test_the_final_eos_counts_in_the_log_probs_and_the_reward_is_read_at_it():
    model = eos_loving_lm()
    prompt, prompt_mask = left_pad([TOKENIZER("Hello")["input_ids"]], EOS)
    body = TOKENIZER(" world", add_special_tokens=False)["input_ids"]
    with_eos = torch.tensor([body + [EOS, EOS]])  # ends with EOS, then one pad (also EOS)
    mask = torch.tensor([[1] * len(body) + [1, 0]])
    logps = response_token_logps(model, prompt, prompt_mask, with_eos, mask)
    assert logps[0, len(body)] != 0 and logps[0, len(body) + 1] == 0  # EOS counts, pad does not
    torch.manual_seed(1)
    scorer = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(TOKENIZER), n_embd=32, n_layer=1, n_head=2, n_positions=64, num_labels=1,
        pad_token_id=EOS)).eval()
    full = torch.cat([prompt, with_eos], 1)
    full_mask = torch.cat([prompt_mask, mask], 1)
    unpadded = full[:, : int(full_mask.sum())]  # prompt + body + EOS, nothing after
    with torch.no_grad():
        ours = score_sequences(scorer, full, full_mask)
        at_eos = scorer.score(scorer.transformer(unpadded).last_hidden_state[:, -1]).squeeze(-1)
        before_eos = scorer.score(scorer.transformer(unpadded).last_hidden_state[:, -2])
    torch.testing.assert_close(ours, at_eos)
    assert not torch.allclose(ours, before_eos.squeeze(-1))  # Hugging Face's pad-based pooling
