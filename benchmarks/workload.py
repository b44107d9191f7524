"""What every contender of a size is given: the tokenizer, the token ids, the seeded models, and
a step clock hooked into its framework.

Models are built from configs with seeded initialisation (nothing is downloaded), so every
contender, in every process, starts from identical weights. Dropout is 0 in every config: leash
and TRL both switch it off, and a bare loop with the same maths must too.

Framework imports (lightning, transformers' Trainer) happen inside the functions that need
them, so a bare-loop process never imports a framework it does not use.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from leash.models.tokenizers import build_word_tokenizer

from common import StepClock, Table
from shapes import Size, TextPair, text_pairs, vocabulary

LR = 1e-3
"""Learning rate of every contender (constant schedule, no warm-up)."""
ADAM_BETAS = (0.9, 0.999)
MAX_GRAD_NORM = 1.0
"""Every contender clips the gradient norm at this value (leash's and TRL's default)."""
DEFINITIONS = {
    "per_s": "pairs per second over the timed steps: pairs_per_step x timed_steps / (end of the "
             "last step - end of the last warm-up step); a step is timed from the end of the "
             "previous one, data loading and framework hooks included",
    "median_step_s": "median seconds of one timed step",
    "peak_mib": "peak RSS of the contender's process for this size over its RSS right after "
                "its imports (the kernel's high-water mark is reset there; models, optimizer, "
                "activations, data and trainer objects all count)",
    "baseline_mib": "RSS right after the contender's imports (its import baseline)",
    "reported_per_s": "leash only: the pairs/s leash's ResourceMetrics wrote to metrics.json "
                      "(resources.samples_per_s, the same warm-up steps left out)",
    "reported_over_clock": "leash only: reported_per_s / per_s",
}
"""What the figures of the preference benchmarks mean (written into their JSON)."""
PREFERENCE_TABLE = Table(
    columns={"per_s": "pairs/s", "median_step_s": "step s", "peak_mib": "peak MiB",
             "baseline_mib": "import MiB"},
    compared=["per_s", "peak_mib"],
    pairs=[("leash", "trl"), ("leash", "bare"), ("trl", "bare")],
)
"""The report of the preference benchmarks: leash vs TRL vs the bare loop."""


def preference_extra(algorithm: dict, notes: list[str]):
    """The ``extra`` JSON entries of a preference benchmark: every setting, the definitions of
    its figures and its notes on what differs between contenders."""

    def extra(rounds: int, workloads: dict[str, Size]) -> dict:
        return {
            "settings": {
                "rounds": rounds, **algorithm, "lr": LR, "scheduler": "constant",
                "adam_betas": ADAM_BETAS, "weight_decay": 0.0, "max_grad_norm": MAX_GRAD_NORM,
                "dtype": "float32",
                "sizes": {name: asdict(size) for name, size in workloads.items()},
            },
            "definitions": DEFINITIONS,
            "notes": notes,
        }

    return extra


@dataclass(frozen=True)
class TokenPair:
    """A preference row as token ids: ``prompt_ids`` holds BOS, each response ends with EOS."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


def tokenizer(size: Size):
    """The size's word-level tokenizer (one word = one token; BOS prepended on encode)."""
    return build_word_tokenizer(vocabulary(size))


def token_pairs(tok, rows: list[TextPair]) -> list[TokenPair]:
    """Token ids of the rows, split as leash's encoding does: ``tok(prompt)`` and
    ``tok(response, add_special_tokens=False) + [EOS]`` (TRL's ids are checked against these)."""

    def response(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]

    return [
        TokenPair(tok(row.prompt)["input_ids"], response(row.chosen), response(row.rejected))
        for row in rows
    ]


def workload_rows(size: Size) -> tuple[object, list[TextPair], list[TokenPair]]:
    """Tokenizer, text rows and token rows of every step of a run at this size."""
    tok = tokenizer(size)
    rows = text_pairs(size, size.total_steps * size.pairs_per_step)
    return tok, rows, token_pairs(tok, rows)


def gpt2_config(size: Size, tok, **extra) -> GPT2Config:
    """GPT-2 of the size's shape for the tokenizer's ids, dropout off."""
    return GPT2Config(
        vocab_size=len(tok),
        n_embd=size.hidden,
        n_layer=size.layers,
        n_head=size.heads,
        n_positions=256,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def causal_lm(size: Size, tok, seed: int = 0) -> GPT2LMHeadModel:
    """A causal LM with weights drawn from ``seed`` (the same in every process)."""
    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config(size, tok)).train()


def scalar_model(size: Size, tok, seed: int = 1) -> GPT2ForSequenceClassification:
    """A one-label sequence-classification GPT-2 (reward model, critic) drawn from ``seed``."""
    torch.manual_seed(seed)
    return GPT2ForSequenceClassification(gpt2_config(size, tok, num_labels=1)).train()


def parameter_count(model: torch.nn.Module) -> int:
    """Parameters of one network."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- batches
def pair_tensors(rows: list[TokenPair], pad_id: int, whole: bool = False):
    """(2B, T) input ids, attention mask and labels: chosen rows over rejected rows, right
    padded; labels hold the response tokens (-100 elsewhere). ``whole`` labels nothing and is
    what a reward model reads."""
    sequences = [r.prompt_ids + r.chosen_ids for r in rows] + [
        r.prompt_ids + r.rejected_ids for r in rows
    ]
    prompts = [len(r.prompt_ids) for r in rows] * 2
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (sequence, prompt) in enumerate(zip(sequences, prompts, strict=True)):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        if not whole:
            labels[row, prompt : len(sequence)] = ids[row, prompt : len(sequence)]
    return ids, mask, labels


def batches(rows: list[TokenPair], size: Size, pad_id: int, whole: bool = False) -> list:
    """The run's batches in order (what the bare loops iterate over), built before timing."""
    step = size.pairs_per_step
    return [pair_tensors(rows[i : i + step], pad_id, whole) for i in range(0, len(rows), step)]


def encoded_pairs(rows: list[TokenPair], texts: list[TextPair]) -> list:
    """The rows as leash's data module hands them to its collator (``EncodedPair``)."""
    from leash.data.encoding import EncodedPair
    from leash.data.formats import RowScores

    return [
        EncodedPair(i, i, text.prompt, row.prompt_ids, row.chosen_ids, row.rejected_ids,
                    RowScores())
        for i, (row, text) in enumerate(zip(rows, texts, strict=True))
    ]


def leash_loader(rows: list[TokenPair], texts: list[TextPair], size: Size, pad_id: int):
    """A DataLoader over leash's encoded rows, in order, collated by leash's ``PairCollator``
    at every step, as ``PreferenceDataModule`` does."""
    from torch.utils.data import DataLoader

    from leash.data.collate import PairCollator

    return DataLoader(encoded_pairs(rows, texts), batch_size=size.pairs_per_step, shuffle=False,
                      collate_fn=PairCollator(pad_id))


def trl_columns(texts: list[TextPair]) -> dict[str, list[str]]:
    """The text rows as the columns of the data set TRL tokenises itself."""
    return {
        "prompt": [t.prompt for t in texts],
        "chosen": [t.chosen for t in texts],
        "rejected": [t.rejected for t in texts],
    }


def assert_same_tokens(dataset, rows: list[TokenPair], whole: bool = False) -> None:
    """Fail unless TRL's processed rows hold exactly our token ids (``whole``: the reward
    trainer's rows, prompt and response in one sequence)."""
    for index, (processed, row) in enumerate(zip(dataset, rows, strict=True)):
        if whole:
            ours = {"chosen_ids": row.prompt_ids + row.chosen_ids,
                    "rejected_ids": row.prompt_ids + row.rejected_ids}
        else:
            ours = {"prompt_ids": row.prompt_ids, "chosen_ids": row.chosen_ids,
                    "rejected_ids": row.rejected_ids}
        theirs = {key: list(processed[key]) for key in ours}
        if theirs != ours:
            raise AssertionError(f"TRL tokenised row {index} differently: {theirs} != {ours}")


def trainer_arguments(size: Size, output_dir: str) -> dict:
    """``TrainingArguments`` shared by TRL's trainers here: what the other contenders do.

    fp32 (TRL defaults to bf16), no gradient checkpointing (TRL defaults to it), plain AdamW
    (not the fused variant transformers picks on recent torch), constant learning rate, the
    same clipping, rows in order, no evaluation, saving, reporting or progress bar.
    """
    return dict(
        output_dir=output_dir, report_to=[], use_cpu=True, bf16=False, fp16=False,
        gradient_checkpointing=False, per_device_train_batch_size=size.pairs_per_step,
        max_steps=size.total_steps, learning_rate=LR, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, adam_beta1=ADAM_BETAS[0], adam_beta2=ADAM_BETAS[1],
        max_grad_norm=MAX_GRAD_NORM, optim="adamw_torch", train_sampling_strategy="sequential",
        save_strategy="no", eval_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        seed=0, max_length=None, pad_to_multiple_of=None,
    )


# ------------------------------------------------------------------------------- clocks
def lightning_ticks(clock: StepClock):
    """A Lightning callback that ticks ``clock`` at every ``on_train_batch_end``."""
    import lightning

    class Ticks(lightning.Callback):
        def on_train_batch_end(self, *args, **kwargs) -> None:
            clock.tick()

    return Ticks()


def hf_ticks(clock: StepClock):
    """A transformers ``TrainerCallback`` that ticks ``clock`` at every ``on_step_end``."""
    from transformers import TrainerCallback

    class Ticks(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs) -> None:
            clock.tick()

    return Ticks()


def quiet_lightning_trainer(max_steps: int, callbacks: list, **overrides):
    """The Trainer users run, minus output: CPU, fp32, no logger, checkpoint, progress bar or
    model summary, no validation."""
    import lightning

    settings = dict(
        accelerator="cpu", devices=1, precision="32-true", max_steps=max_steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=callbacks,
    )
    return lightning.Trainer(**{**settings, **overrides})


def leash_resources(size: Size, run_dir: str):
    """leash's ResourceMetrics callback (every ``leash train`` run has it), leaving out the
    size's warm-up steps as the step clock does, writing ``metrics.json`` into ``run_dir``."""
    from leash.callbacks.resources import ResourceMetrics

    return ResourceMetrics(run_dir, warmup_steps=size.warmup_steps)


def reported_rate(run_dir: str) -> float:
    """The pairs/s leash reported: ``resources.samples_per_s`` of its ``metrics.json``."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())["resources"]["samples_per_s"]


def reported_check(results: dict) -> dict:
    """``leash_reported_rate``: per size, leash's own pairs/s over the step clock's in every
    round, the largest deviation, and whether it is within 2% (issue 14, item 3)."""
    check = {}
    for size in results["leash"][0]:
        ratios = [rounds[size]["reported_over_clock"] for rounds in results["leash"]]
        worst = max(abs(ratio - 1.0) for ratio in ratios)
        check[size] = {"reported_over_clock": ratios, "max_deviation": worst,
                       "within_2_percent": worst <= 0.02}
    return {"leash_reported_rate": check}


def run_figures(clock: StepClock, memory, size: Size, parameters: int) -> dict:
    """One contender's figures for one run: steady-state pairs/s and step times, peak memory
    over its import baseline, the thread count it ended with, its trained parameters."""
    return {
        **clock.steady(size.warmup_steps, size.pairs_per_step),
        **memory.figures(),
        "threads": torch.get_num_threads(),
        "parameters": parameters,
    }
