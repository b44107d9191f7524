"""Held-out preference pairs on the synthetic task, and their implicit reward model computed
directly (numpy, a reference loaded afresh from disk), for the online modules' tests."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from leash.data.collate import PairCollator
from leash.data.encoding import EncodedPair
from leash.data.formats import RowScores
from leash.data.tasks.synthetic import SyntheticTask
from leash.models.logprobs import pair_logps


def heldout_pair_loader(task: SyntheticTask, batch_size: int = 5) -> DataLoader:
    """Two pairs per held-out prompt of the task's words (some rejected responses cut without
    EOS), in an arbitrary chosen/rejected order, carrying their gold rewards."""
    tokenizer, words = task.tokenizer(), task.response_words

    def encode(response: list[str], ended: bool) -> list[int]:
        ids = tokenizer(" ".join(response), add_special_tokens=False)["input_ids"]
        return ids + [tokenizer.eos_token_id] * ended

    rows = []
    for k, prompt in enumerate(task.heldout_prompts * 2):
        first = ([words[k % len(words)], words[(3 * k + 1) % len(words)]], True)
        second = ([words[(5 * k + 2) % len(words)]] * (1 + k % 3), k % 4 != 3)
        chosen, rejected = (first, second) if k % 2 else (second, first)
        gold = task.gold_rewards([prompt, prompt], [chosen[0], rejected[0]],
                                 [chosen[1], rejected[1]])
        rows.append(EncodedPair(
            k, k, prompt, tokenizer(prompt)["input_ids"], encode(*chosen), encode(*rejected),
            RowScores(float(gold[0]), float(gold[1])),
        ))
    return DataLoader(rows, batch_size=batch_size, collate_fn=PairCollator(tokenizer.pad_token_id))


@torch.no_grad()
def direct_implicit_rm(
    policy: torch.nn.Module, reference: torch.nn.Module, loader: DataLoader, beta: float,
    allowed_token_ids: torch.Tensor,
) -> dict[str, float]:
    """Accuracy (ties wrong), gold sign agreement and gold Pearson correlation of the margins
    ``beta · ((log pi_c - log ref_c) - (log pi_r - log ref_r))`` over every pair of ``loader``."""
    margins, gold = [], []
    for batch in loader:
        pairs = batch.concatenated()
        policy_logps = pair_logps(policy.eval(), *pairs, allowed_token_ids)[0]
        reference_logps = pair_logps(reference.eval(), *pairs, allowed_token_ids)[0]
        margins.append(beta * ((policy_logps.chosen - reference_logps.chosen)
                               - (policy_logps.rejected - reference_logps.rejected)))
        gold.append(batch.chosen_gold_reward - batch.rejected_gold_reward)
    margin, gold_margin = torch.cat(margins).double().numpy(), torch.cat(gold).double().numpy()
    assert np.abs(margin).max() > 1e-4, "the policy has not left the reference: a vacuous check"
    usable = gold_margin != 0
    return {
        "eval/implicit_rm_accuracy": float(np.mean(margin > 0)),
        "eval/implicit_rm_gold_accuracy":
            float(np.mean(np.sign(margin[usable]) == np.sign(gold_margin[usable]))),
        "eval/implicit_rm_gold_corr": float(np.corrcoef(margin, gold_margin)[0, 1]),
    }
