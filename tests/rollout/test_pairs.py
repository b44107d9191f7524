"""On-policy pairs: labelling by score (ties skipped) with hand-worked numbers, the DPO layout of
sampled responses written out by hand, selecting / joining pair sets, and the judge reward that
labels them on real data."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers import save_judge
from leash.config import TaskConfig
from leash.data.tasks.synthetic import SyntheticTask
from leash.data.types import PreferenceBatch
from leash.models.judge import Judge
from leash.rollout.pairs import concatenate_pairs, label_pairs, pair_batch, select_prompts
from leash.rollout.rewards import JudgeReward
from leash.rollout.rollout import Responses
from leash.sequences import IGNORE_INDEX as IG

PAD = 0


# ------------------------------------------------------------------------------------ labelling
def test_each_prompts_higher_score_is_chosen_and_ties_are_skipped():
    # Prompt 0: rows 0, 1 score 1.0 < 2.0  -> chosen row 1, rejected row 0.
    # Prompt 1: rows 2, 3 score 3.0 = 3.0  -> tie, no pair.
    # Prompt 2: rows 4, 5 score 0.5 > -1.0 -> chosen row 4, rejected row 5.
    # Prompt 3: rows 6, 7 score -2.0 < 4.0 -> chosen row 7, rejected row 6.
    scores = torch.tensor([1.0, 2.0, 3.0, 3.0, 0.5, -1.0, -2.0, 4.0])
    labels = label_pairs(scores)
    assert labels.chosen.tolist() == [1, 4, 7]
    assert labels.rejected.tolist() == [0, 5, 6]
    assert labels.prompt.tolist() == [0, 2, 3]
    assert labels.ties == 1
    assert (scores[labels.chosen] > scores[labels.rejected]).all()


def test_all_ties_give_no_pair_and_count_every_prompt():
    labels = label_pairs(torch.tensor([0.25, 0.25, -1.0, -1.0]))
    assert labels.chosen.tolist() == [] and labels.rejected.tolist() == []
    assert labels.ties == 2


@pytest.mark.parametrize(
    ("scores", "message"),
    [(torch.tensor([1.0, 2.0, 3.0]), "shape"), (torch.ones(2, 2), "shape"),
     (torch.tensor([1.0, float("nan")]), "NaN")],
)
def test_bad_scores_are_refused(scores, message):
    with pytest.raises(ValueError, match=message):
        label_pairs(scores)


# ------------------------------------------------------------------------------------- layout
def responses() -> Responses:
    """Two prompts ([5, 6] and [7], left padded) with two sampled responses each."""
    prompt_ids = torch.tensor([[5, 6], [5, 6], [PAD, 7], [PAD, 7]])
    prompt_mask = torch.tensor([[1, 1], [1, 1], [0, 1], [0, 1]])
    response_ids = torch.tensor([[8, 2, PAD], [9, 9, 2], [8, PAD, PAD], [3, 4, 2]])
    response_mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]])
    eos = torch.tensor([True, True, False, True])
    return Responses(prompt_ids, prompt_mask, response_ids, response_mask, eos)


def test_labelled_responses_become_right_padded_pairs_with_labels_on_responses():
    labels = label_pairs(torch.tensor([1.0, 0.0, -1.0, 2.0]))  # prompt 0: row 0; 1: row 3
    batch = pair_batch(responses(), labels, torch.tensor([10, 11]), PAD)
    # prompt + response, right padded to the longest pair (2 + 3 = 1 + 3 + 1 = 5 tokens).
    assert batch.chosen_input_ids.tolist() == [[5, 6, 8, 2, PAD], [7, 3, 4, 2, PAD]]
    assert batch.chosen_attention_mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]
    assert batch.chosen_labels.tolist() == [[IG, IG, 8, 2, IG], [IG, 3, 4, 2, IG]]
    assert batch.rejected_input_ids.tolist() == [[5, 6, 9, 9, 2], [7, 8, PAD, PAD, PAD]]
    assert batch.rejected_attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch.rejected_labels.tolist() == [[IG, IG, 9, 9, 2], [IG, 8, IG, IG, IG]]
    assert batch.index.tolist() == [10, 11]  # the prompts' indices in their split
    assert batch.chosen_gold_reward is None and batch.reference_chosen_logps is None


def test_no_pair_gives_an_empty_batch():
    batch = pair_batch(responses(), label_pairs(torch.zeros(4)), torch.tensor([0, 1]), PAD)
    assert len(batch) == 0 and batch.index.tolist() == []


# ---------------------------------------------------------------------------- select and join
def part(index: list[int], width: int) -> PreferenceBatch:
    """Pairs of the prompts ``index``, each sequence ``width - 1`` real tokens + 1 pad."""
    rows = len(index)
    ids = torch.arange(1, rows * width + 1).view(rows, width)
    mask = torch.ones(rows, width, dtype=torch.long)
    mask[:, -1] = 0
    ids = ids * mask
    labels = torch.where(mask > 0, ids, torch.full_like(ids, IG))
    return PreferenceBatch(ids, mask, labels, ids + 100 * mask, mask, labels,
                           index=torch.tensor(index))


def test_joined_sets_pad_to_the_widest_and_selecting_a_parts_prompts_gives_it_back():
    narrow, wide = part([0, 1], width=3), part([2], width=5)
    joined = concatenate_pairs([narrow, wide], PAD)
    assert joined.chosen_input_ids.shape == (3, 5)
    assert joined.chosen_input_ids[0].tolist() == [1, 2, 0, PAD, PAD]
    assert joined.chosen_labels[0].tolist() == [1, 2, IG, IG, IG]
    assert joined.chosen_attention_mask[0].tolist() == [1, 1, 0, 0, 0]
    assert joined.reference_chosen_logps is None
    # Selecting trims the columns no kept row uses: narrow's own width minus its pad column.
    back = select_prompts(joined, torch.tensor([1, 0]))
    for spec in dataclasses.fields(back):
        value, expected = getattr(back, spec.name), getattr(narrow, spec.name)
        if value is None:
            assert expected is None
        else:
            assert torch.equal(value, expected if value.ndim == 1 else expected[:, :2]), spec.name
    assert len(select_prompts(joined, torch.tensor([7]))) == 0


# -------------------------------------------------------------------------------- the judge
def test_the_judge_reward_scores_the_decoded_texts(tmp_path):
    """``algo.reward=judge``: the ids are decoded (BOS, EOS and padding dropped) and the judge
    scores the texts in its own format, exactly as :meth:`Judge.score` does on them."""
    tokenizer = SyntheticTask.from_config(TaskConfig(num_prompts=16)).tokenizer()
    judge = Judge.load(str(save_judge(tokenizer, tmp_path / "judge")))
    # <|bos|>=1, topic0=4, ctx5=13, ctx3=11, topic2=6, w0=14, w3=17, <|eos|>=2, <|pad|>=0
    prompt_ids = torch.tensor([[1, 4, 13, 11], [0, 0, 1, 6]])
    prompt_mask = (prompt_ids > 0).long()
    response_ids = torch.tensor([[14, 17, 2], [17, 2, 0]])
    response_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    scores = JudgeReward(judge, tokenizer)(prompt_ids, prompt_mask, response_ids, response_mask)
    expected = judge.score(["topic0 ctx5 ctx3", "topic2"], ["w0 w3", "w3"])
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected.float())
