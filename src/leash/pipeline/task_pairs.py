"""Writes a built-in task's preference pairs, sampled from an SFT policy, as a saved data set."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from leash.data.tasks.synthetic import SyntheticTask
from leash.rollout.generation import task_sampler
from leash.sequences import evaluating


def write_task_pairs(
    task: SyntheticTask, policy_path: str | Path, seed: int, out_dir: Path
) -> None:
    """Sample pairs from the SFT policy at ``policy_path``, label them, ``save_to_disk``.

    As in the DPO paper's controlled-sentiment experiment: both responses of a pair come from
    the SFT policy (temperature 1), and the gold reward labels them by Bradley-Terry.
    """
    model = AutoModelForCausalLM.from_pretrained(policy_path)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model):
        pairs = task.preference_pairs(task_sampler(task, model, tokenizer, generator=generator))
    pairs.save_to_disk(str(out_dir))
