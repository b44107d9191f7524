"""The one LightningDataModule every algorithm reads: the same preferences, split and order.

``setup()`` loads the source, normalises every row (formats), tokenises it and checks budgets
(encoding), holds out an eval split when the source has none (by prompt, seeded, among the
usable rows only: a bad row takes no eval slot and is counted in train), shuffles and caps each
split (seeded), and reports bad rows. Splits are named ``train`` and ``eval`` whatever the
source calls them. The ``view`` picks what the dataloaders yield:

- ``pairs``   -> PreferenceBatch (reward model, DPO family),
- ``sft``     -> SFTBatch (SFT corpus rows, or prompt + chosen of preference rows),
- ``prompts`` -> PromptBatch of the split's deduplicated prompts, left padded (PPO rollouts).

Validation yields the eval split in the same batches, except under ``prompts``: the online
algorithms validate on the held-out *pairs* (PreferenceBatch), where they score their policy as
an implicit reward model, while the evaluator samples the held-out prompts itself. Only an SFT
corpus, which has no pairs, validates on its prompts there.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal, get_args

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from leash.config import BadRows, DataConfig
from leash.data.collate import PairCollator, PromptCollator, ReferenceLogps, SFTCollator
from leash.data.encoding import (
    BadRowReport,
    Budget,
    EncodedPair,
    EncodedPrompt,
    EncodedRow,
    EncodedSFT,
    FittedItem,
    Item,
    RowEncoder,
    collect_split,
    unique_prompts,
)
from leash.data.errors import DataError
from leash.data.files import RawRow
from leash.data.formats import BadReason, RowKind, normalise, resolve_kind
from leash.data.sampling import ResumableLoader, ResumableSampler
from leash.data.sources import (
    EVAL_ORDER_STREAM,
    TRAIN_ORDER_STREAM,
    carve_eval,
    load_source,
    readable_rows,
    shuffle_and_cap,
)

log = logging.getLogger(__name__)

View = Literal["pairs", "sft", "prompts"]
Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")


@dataclass
class _SplitData:
    """The kept rows of one split and its deduplicated prompts."""

    rows: list[EncodedRow]
    prompts: list[EncodedPrompt]


class PreferenceDataModule(L.LightningDataModule):
    """Preference (or SFT-corpus) data from any source, as the batches of one view.

    Args:
        cfg: the data config (``source`` must not be ``task``: the caller resolves a built-in
            task into a ``disk`` source first).
        tokenizer: the policy's tokenizer (its chat template renders conversational rows).
        view: ``pairs``, ``sft`` or ``prompts``.
        seed: seeds the training shuffle and, unless ``split_seed`` is given, the data choice.
        split_seed: seeds the data choice: the eval hold-out and which rows a row cap keeps
            (and their order); ``upstream.seed=shared`` keeps it fixed across seeds.
    """

    def __init__(
        self,
        cfg: DataConfig,
        tokenizer: PreTrainedTokenizerBase,
        view: View,
        seed: int = 0,
        split_seed: int | None = None,
    ) -> None:
        super().__init__()
        if view not in get_args(View):
            raise ValueError(f"view: must be one of {get_args(View)}, got {view!r}")
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.view: View = view
        self.seed = seed
        self.split_seed = seed if split_seed is None else split_seed
        pad_id = tokenizer.pad_token_id
        # GPT-2-like tokenizers have no pad token; the attention mask makes the filler harmless.
        self.pad_id: int = tokenizer.eos_token_id if pad_id is None else pad_id
        self.kind: RowKind | None = None
        self._splits: dict[Split, _SplitData] = {}
        self._report: BadRowReport | None = None
        self._reference: dict[Split, ReferenceLogps] = {}

    # ------------------------------------------------------------------------------- setup
    def prepare_data(self) -> None:
        """Nothing to download ahead: ``setup`` loads (sources are local or hub-cached)."""

    def setup(self, stage: str | None = None) -> None:
        """Load, split, encode and check every split once (later calls do nothing)."""
        if self._report is not None:
            return
        source = load_source(self.cfg)
        train_raw = source.train
        if not train_raw:
            raise DataError(f"data: split {source.train_name!r} of {self.cfg.path} is empty")
        readable = list(readable_rows(train_raw))
        sample = next((raw for raw in readable if raw.get("chosen") is not None), {})
        try:
            self.kind = kind = resolve_kind(self.cfg.format, source.columns, sample)
        except ValueError as error:
            raise DataError(f"data: {self.cfg.path}: {error}") from None
        if kind == RowKind.sft and self.view == "pairs":
            raise DataError(
                f"data: {self.cfg.path} is an SFT corpus (prompt/response); the `pairs` view "
                "needs preference rows (chosen/rejected)"
            )
        encoder = RowEncoder(self.tokenizer, Budget.from_config(self.cfg))
        train_items = encoder.encode(self._normalise(train_raw, kind))
        if source.eval is None:
            train_items, eval_items = self._hold_out(train_items)
            eval_name = source.train_name
        else:
            eval_items = encoder.encode(self._normalise(source.eval, kind))
            eval_name = str(source.eval_name)
        train_items = self._order(train_items, self.cfg.max_train_rows, TRAIN_ORDER_STREAM)
        eval_items = self._order(eval_items, self.cfg.max_eval_rows, EVAL_ORDER_STREAM)
        train, train_report = collect_split("train", source.train_name, train_items)
        evals, eval_report = collect_split("eval", eval_name, eval_items)
        report = BadRowReport([train_report, eval_report])
        self._check(report)
        self._splits = {
            "train": _SplitData(train, unique_prompts(train)),
            "eval": _SplitData(evals, unique_prompts(evals)),
        }
        self._report = report
        log.info("data %s (%s rows): %s", self.cfg.name, kind.value, report.summary())

    def _normalise(self, raw_rows: list[RawRow], kind: RowKind) -> list[Item]:
        """Every raw row as (source index, normalised row or reason); an unreadable one keeps
        the file reader's reason."""
        return [
            (i, raw if isinstance(raw, BadReason) else normalise(raw, kind, self.tokenizer))
            for i, raw in enumerate(raw_rows)
        ]

    def _hold_out(self, items: list[FittedItem]) -> tuple[list[FittedItem], list[FittedItem]]:
        """(train, eval) items: ``eval_fraction`` of the usable rows' prompts held out.

        Bad rows stay in train, where they are counted: they would otherwise take eval slots.
        """
        log.info(
            "data: no eval split %r; holding out %.0f%% of the train prompts",
            self.cfg.eval_split,
            100 * self.cfg.eval_fraction,
        )
        usable = [
            (k, row.prompt) for k, (_, row) in enumerate(items) if not isinstance(row, BadReason)
        ]
        _, eval_rows = carve_eval([p for _, p in usable], self.cfg.eval_fraction, self.split_seed)
        held_out = {usable[k][0] for k in eval_rows}
        train = [item for k, item in enumerate(items) if k not in held_out]
        return train, [items[k] for k in sorted(held_out)]

    def _order(self, items: list[FittedItem], limit: int | None, stream: int) -> list[FittedItem]:
        """The split's rows in seeded order, capped at ``limit``."""
        order = shuffle_and_cap(range(len(items)), limit, self.split_seed, stream)
        return [items[i] for i in order]

    def _check(self, report: BadRowReport) -> None:
        """Apply the bad-row policy; a split left without rows is always an error."""
        if report.total and self.cfg.bad_rows == BadRows.error:
            raise DataError("data.bad_rows=error and the data has bad rows:\n" + report.describe())
        if report.total:
            log.warning("data: skipping %d bad rows\n%s", report.total, report.describe())
        for split in report.splits:
            if split.rows_kept == 0:
                raise DataError(
                    f"data: no usable rows left in the {split.split} split "
                    f"({split.rows_read} read)\n{report.describe()}"
                )

    # --------------------------------------------------------------------------- accessors
    @property
    def bad_rows(self) -> BadRowReport:
        """Rows read, kept and dropped per reason and per split."""
        if self._report is None:
            raise RuntimeError("PreferenceDataModule.setup() has not run yet")
        return self._report

    def _split(self, split: str) -> _SplitData:
        if split not in SPLITS:
            raise ValueError(f"split: must be one of {SPLITS}, got {split!r}")
        if self._report is None:
            raise RuntimeError("PreferenceDataModule.setup() has not run yet")
        return self._splits[split]  # type: ignore[index]

    def pairs(self, split: Split) -> list[EncodedPair]:
        """The encoded preference pairs of a split, in order (``pairs(s)[i].index == i``)."""
        rows = self._split(split).rows
        if self.kind == RowKind.sft:
            raise ValueError("data: an SFT corpus has no preference pairs")
        return rows  # type: ignore[return-value]

    def pairs_digest(self, split: Split) -> str:
        """A hash of a split's pairs' token ids, in order: what a cache of per-pair values
        (the reference log-probs) must match."""
        digest = hashlib.sha256()
        for pair in self.pairs(split):
            digest.update(repr((pair.prompt_ids, pair.chosen_ids, pair.rejected_ids)).encode())
        return digest.hexdigest()[:16]

    def sft_rows(self, split: Split) -> list[EncodedSFT]:
        """SFT examples of a split: corpus rows, or prompt + chosen of preference rows."""
        rows = self._split(split).rows
        return [row.as_sft() if isinstance(row, EncodedPair) else row for row in rows]

    def prompts(self, split: Split) -> list[EncodedPrompt]:
        """The deduplicated prompts of a split, in order of first occurrence."""
        return self._split(split).prompts

    def train_prompts(self) -> list[str]:
        """Texts of the deduplicated training prompts (PPO rollouts)."""
        return [p.prompt for p in self.prompts("train")]

    def eval_prompts(self) -> list[str]:
        """Texts of the deduplicated held-out prompts (the common evaluator)."""
        return [p.prompt for p in self.prompts("eval")]

    def attach_reference_logps(
        self, split: Split, chosen: torch.Tensor, rejected: torch.Tensor
    ) -> None:
        """Store precomputed reference log-probs; later pair batches of ``split`` carry them.

        ``chosen`` and ``rejected`` are (N,) summed log-probs, N = ``len(pairs(split))``,
        entry i belonging to the pair with ``index == i``.
        """
        count = len(self.pairs(split))
        for name, values in (("chosen", chosen), ("rejected", rejected)):
            if tuple(values.shape) != (count,):
                raise ValueError(
                    f"reference {name} log-probs of split {split!r}: expected shape ({count},), "
                    f"got {tuple(values.shape)}"
                )
        self._reference[split] = ReferenceLogps(
            chosen.detach().to("cpu", torch.float32), rejected.detach().to("cpu", torch.float32)
        )

    # ------------------------------------------------------------------------- dataloaders
    def train_dataloader(self) -> DataLoader:
        """The train split in the view's batches, in the seeded order of :mod:`leash.data.sampling`
        (unless ``data.shuffle`` is off), resumable mid-epoch from a checkpoint.

        Rollout prompts (the ``prompts`` view) come in full batches only: a PPO iteration splits
        its rollout batch into exact minibatches, so the last partial batch of each epoch is
        dropped (and logged); reshuffled every epoch, every prompt still takes its turn.
        """
        loader = self._loader(
            "train", self.cfg.batch_size, shuffle=self.cfg.shuffle,
            drop_last=self.view == "prompts", resumable=True,
        )
        if self.view == "prompts":
            self._report_dropped_prompts(loader)
        return loader

    def _report_dropped_prompts(self, loader: DataLoader) -> None:
        """Fail when no full batch of rollout prompts exists; log how many each epoch drops."""
        rows = len(loader.sampler)  # this process's prompts per epoch
        if rows < self.cfg.batch_size:
            raise ValueError(
                f"data.batch_size: {self.cfg.batch_size} rollout prompts per batch, but this "
                f"process has only {rows} train prompts; lower data.batch_size"
            )
        dropped = rows % self.cfg.batch_size
        if dropped:
            log.info(
                "data: %d train prompts per process in batches of %d: each epoch's last %d "
                "(reshuffled every epoch) are left out of the rollouts", rows,
                self.cfg.batch_size, dropped,
            )

    def val_dataloader(self) -> DataLoader:
        """The eval split in order: in the view's batches, or its pairs under ``prompts`` (when
        the data has pairs; see the module docstring)."""
        view: View = self.view
        if view == "prompts" and self.kind != RowKind.sft:
            view = "pairs"
        return self._loader("eval", self.cfg.eval_batch_size, shuffle=False, view=view)

    def ordered_dataloader(self, split: Split) -> DataLoader:
        """Every row of ``split`` in order, in one process (for one-off precomputations)."""
        return self._loader(split, self.cfg.eval_batch_size, shuffle=False)

    def _loader(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool,
        drop_last: bool = False,
        resumable: bool = False,
        view: View | None = None,
    ) -> DataLoader:
        view = view or self.view
        if view == "pairs":
            dataset: list = self.pairs(split)
            collate = PairCollator(self.pad_id, self._reference.get(split))
        elif view == "sft":
            dataset, collate = self.sft_rows(split), SFTCollator(self.pad_id)
        else:
            dataset, collate = self.prompts(split), PromptCollator(self.pad_id)
        # Our own sampler (the Trainer runs with use_distributed_sampler=False): Lightning's
        # would always shuffle training data, and `data.shuffle=false` must hold in N processes
        # too (rank r takes rows r, r + N, ...: together one ordered batch).
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        sampler = ResumableSampler(
            len(dataset), shuffle, self.seed,
            num_replicas=torch.distributed.get_world_size() if distributed else 1,
            rank=torch.distributed.get_rank() if distributed else 0,
        )
        loader_type, extra = DataLoader, {}
        if resumable:
            loader_type, extra = ResumableLoader, {"batches_done": self._batches_done}
        return loader_type(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate,
            drop_last=drop_last,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            **extra,
        )

    def _batches_done(self) -> int:
        """Train batches the Trainer has finished in the current epoch (for checkpoints)."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
