"""Schema of the `data` group: where preference data comes from, the built-in task."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from leash.config.enums import BadRows, DataSource, RowFormat, Truncation
from leash.config.fields import non_negative, positive, seed_field


@dataclass
class TaskConfig:
    """The built-in synthetic task with a gold reward (used when ``data.source=task``)."""

    name: str = "exact"
    """Task variant: `exact` (every response enumerable) or `long` (throughput measurements)."""
    num_topics: int = positive(4)
    """Topic tokens; the sign of each response word's valence depends on the prompt's topic."""
    num_prompt_words: int = positive(6)
    """Context words that follow the topic token in a prompt."""
    prompt_length: int = positive(3)
    """Tokens in a prompt: one topic token then `prompt_length - 1` context words."""
    num_prompts: int = positive(64)
    """Distinct prompts in the task (split between train and held-out)."""
    response_vocab_size: int = positive(8)
    """Response words (EOS excluded)."""
    max_response_length: int = positive(4)
    """Longest response in tokens, EOS included; longer samples are cut."""
    target_length: int = positive(3)
    """Response length (EOS excluded) at which the length term of the gold reward peaks."""
    sft_corpus_size: int = positive(2048)
    """SFT examples drawn from the behaviour distribution."""
    pairs_per_prompt: int = positive(16)
    """Preference pairs sampled from the SFT policy per train prompt."""
    label_temperature: float = non_negative(1.0)
    """Bradley-Terry temperature of the preference labels; 0 gives deterministic labels."""
    pair_coverage: float = field(default=1.0, metadata={"gt": 0, "le": 1})
    """Share of all responses the preference pairs may hold: a seeded random subset, the same for
    every prompt; a sampled pair with a response outside it is sampled again. 1: every response."""
    eval_fraction: float = field(default=0.25, metadata={"gt": 0, "lt": 1})
    """Fraction of the prompts held out for evaluation."""
    seed: int = seed_field(0)
    """Seed of the task's vocabulary valences, prompts and behaviour distribution."""


@dataclass
class DataConfig:
    """Where preference data comes from and how it becomes token batches."""

    name: str = MISSING
    """Short name used in run names and reports."""
    source: DataSource = DataSource.task
    """`task` (built-in, generated locally), `hub`, `files` (JSON/JSONL/Parquet/CSV) or `disk`."""
    path: str | None = None
    """Hub data set name, file path or glob, or a `save_to_disk` folder (unused for `task`)."""
    subset: str | None = None
    """Hub configuration name (`datasets.load_dataset(path, subset)`)."""
    train_split: str = "train"
    """Split holding the training pairs."""
    eval_split: str | None = "test"
    """Split of held-out pairs; when the source lacks it, `eval_fraction` of train is held out."""
    eval_fraction: float = field(default=0.1, metadata={"gt": 0, "lt": 1})
    """Held-out fraction carved from the train split when the source has no eval split."""
    format: RowFormat = RowFormat.auto
    """Row format: explicit prompt, implicit (HH-RLHF shared prefix), conversational, or auto."""
    max_length: int = positive(128)
    """Token budget of prompt + response."""
    max_prompt_length: int = positive(64)
    """Token budget of the prompt alone."""
    truncation: Truncation = Truncation.truncate_prompt_left
    """Over-budget rows: cut the prompt's left (then the response's right), or drop the row."""
    bad_rows: BadRows = BadRows.skip
    """Malformed rows: `skip` (counted and reported) or `error` (stop the run)."""
    max_train_rows: int | None = field(default=None, metadata={"ge": 1})
    """Use at most this many training rows (after the seeded shuffle); None keeps all."""
    max_eval_rows: int | None = field(default=None, metadata={"ge": 1})
    """Use at most this many held-out rows; None keeps all."""
    batch_size: int = positive(16)
    """Training batch size per process."""
    shuffle: bool = True
    """Shuffle training rows each epoch (seeded); off gives the same order in 1 or N processes."""
    eval_batch_size: int = positive(32)
    """Evaluation batch size per process."""
    num_workers: int = non_negative(0)
    """DataLoader worker processes."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """Parameters of the built-in task (only read when `source=task`)."""
    relabel_with: str | None = None
    """Synthetic-gold mode: a judge (hub name or folder) relabels every pair; None keeps labels."""
    relabel_temperature: float = non_negative(1.0)
    """Bradley-Terry temperature of the judge's labels; 0 picks the higher score (ties kept)."""
