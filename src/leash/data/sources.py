"""Loading a source into raw train/eval rows, and the seeded choice of which rows each split uses.

Sources (``DataConfig.source``): ``hub`` (``datasets.load_dataset(path, subset)``), ``files``
(local JSON/JSONL/Parquet/CSV, chosen by extension; ``path`` may be a glob; the files form the
train split; read record by record in :mod:`leash.data.files`, so a bad line is a counted bad
row) and ``disk`` (``datasets.load_from_disk``: a Dataset, taken as the train split, or a
DatasetDict). ``task`` is resolved by the caller into a ``disk`` source before the data module is
built, so it is refused here.

Determinism: every random choice draws from ``numpy.random.default_rng([seed, stream])`` with a
fixed stream per purpose, so the same seed gives the same split and the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np

from leash.config import DataConfig, DataSource
from leash.data.errors import DataError
from leash.data.files import RawRow, read_data_files
from leash.data.formats import CARRIED_COLUMNS, ENDED_COLUMNS, BadReason

log = logging.getLogger(__name__)

ROW_COLUMNS = ("prompt", "chosen", "rejected", "response", *CARRIED_COLUMNS, *ENDED_COLUMNS)
"""The only columns read; any other column is ignored."""

CARVE_STREAM, TRAIN_ORDER_STREAM, EVAL_ORDER_STREAM = 0, 1, 2


@dataclass
class SourceSplits:
    """The raw rows of a source's splits (only the :data:`ROW_COLUMNS`); ``eval`` is None when
    the source has no eval split. A row a file reader could not read is its reason."""

    train: list[RawRow]
    train_name: str
    eval: list[RawRow] | None
    eval_name: str | None
    columns: list[str]
    """The train split's columns among :data:`ROW_COLUMNS` (what the row format is told by)."""


def load_source(cfg: DataConfig) -> SourceSplits:
    """Load the train split and, when the source has it, the eval split named in ``cfg``."""
    if cfg.source == DataSource.task:
        raise ValueError(
            "data.source=task must be resolved into a `disk` source (the generated task data "
            "set) before PreferenceDataModule is built"
        )
    if not cfg.path:
        raise ValueError(f"data.path: required when data.source={cfg.source.value}")
    if cfg.source == DataSource.files:
        rows, columns = read_data_files(cfg.path)
        rows = [_row_columns(row) for row in rows]
        columns = [name for name in columns if name in ROW_COLUMNS]
        return SourceSplits(rows, cfg.train_split, None, None, columns)
    if cfg.source == DataSource.hub:
        loaded = datasets.load_dataset(cfg.path, cfg.subset)
    else:
        loaded = datasets.load_from_disk(cfg.path)
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({cfg.train_split: loaded})
    if cfg.train_split not in loaded:
        raise DataError(
            f"data.train_split: no split {cfg.train_split!r} in {cfg.path}; "
            f"splits are {sorted(loaded)}"
        )
    has_eval = cfg.eval_split is not None and cfg.eval_split in loaded
    train = loaded[cfg.train_split]
    return SourceSplits(
        train=_dataset_rows(train),
        train_name=cfg.train_split,
        eval=_dataset_rows(loaded[cfg.eval_split]) if has_eval else None,
        eval_name=cfg.eval_split if has_eval else None,
        columns=[name for name in train.column_names if name in ROW_COLUMNS],
    )


def _row_columns(row: RawRow) -> RawRow:
    """A file record restricted to the columns the row formats read."""
    return row if isinstance(row, BadReason) else {k: row[k] for k in row if k in ROW_COLUMNS}


def _dataset_rows(dataset: datasets.Dataset) -> list[RawRow]:
    """The rows of a split as dicts, restricted to the columns the row formats read."""
    columns = [name for name in dataset.column_names if name in ROW_COLUMNS]
    return dataset.select_columns(columns).to_list()


def readable_rows(rows: Sequence[RawRow]) -> Iterator[dict[str, Any]]:
    """The rows that were read as records (not a file reader's reasons)."""
    return (row for row in rows if not isinstance(row, BadReason))


# --------------------------------------------------------------------------------- splitting
def carve_eval(keys: Sequence[Hashable], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Hold out a seeded ``fraction`` of the groups of rows sharing a key (their prompt).

    Grouping by prompt keeps every pair of a held-out prompt out of training, so eval prompts
    are never trained on. ``keys`` are those of the usable rows only (a bad row must not take an
    eval slot). Returns (train row indices, eval row indices) into ``keys``, each ascending.
    """
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    if len(groups) < 2:
        raise ValueError(
            f"cannot hold out data.eval_fraction={fraction} of {len(groups)} distinct prompt(s) "
            "of usable rows; the source needs an eval split or more usable rows"
        )
    order = np.random.default_rng([seed, CARVE_STREAM]).permutation(len(groups))
    num_eval = min(max(1, round(fraction * len(groups))), len(groups) - 1)
    members = list(groups.values())
    eval_rows = sorted(i for group in order[:num_eval] for i in members[group])
    train_rows = sorted(i for group in order[num_eval:] for i in members[group])
    return train_rows, eval_rows


def shuffle_and_cap(rows: Sequence[int], limit: int | None, seed: int, stream: int) -> list[int]:
    """A seeded permutation of ``rows``, cut to its first ``limit`` entries (None keeps all)."""
    order = np.random.default_rng([seed, stream]).permutation(len(rows))
    shuffled = [rows[i] for i in order]
    return shuffled if limit is None else shuffled[:limit]
