"""Synthetic-gold mode (Gao et al. 2022): every preference pair relabelled by a judge.

The judge scores both responses of a pair, ``s_a`` (the source's chosen) and ``s_b`` (its
rejected), and the new label is drawn from its Bradley-Terry probability

    P(a preferred) = sigmoid((s_a - s_b) / T)

from a seeded stream (one per split, so train labels do not depend on the eval split). At T = 0
the higher score wins; a tie keeps the source's order and is counted. A pair whose label flips
has its ``chosen`` and ``rejected`` swapped, together with every ``chosen*`` / ``rejected*``
column that belongs to them (gold rewards, ended flags, reference log-probs), so a row keeps its
format (explicit, implicit or conversational) and the data module reads it as before. The judge's
scores are kept beside them as ``chosen_judge_score`` / ``rejected_judge_score``.

Rows the judge cannot read (missing or malformed fields) are kept unchanged, without scores, and
counted: the data module then reports them as bad rows as it would without relabelling.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from leash.config import DataConfig
from leash.data.formats import ASSISTANT_MARKER, BadReason, RowKind, resolve_kind, split_implicit
from leash.data.sources import load_source, readable_rows
from leash.models.judge import Judge

log = logging.getLogger(__name__)

ScoreFn = Callable[[list[str], list[str]], torch.Tensor]
"""(prompts, responses) -> (N,) scores, e.g. :meth:`leash.models.judge.Judge.score`."""

RELABEL_STREAM = 7
"""Stream of the label draws: ``numpy.random.default_rng([seed, RELABEL_STREAM, split])``."""

SCORE_COLUMNS = ("chosen_judge_score", "rejected_judge_score")

_HH_ROLES = {"system": "Human", "user": "Human", "assistant": "Assistant"}


@dataclass(frozen=True)
class RelabelStats:
    """What relabelling did to one split."""

    rows: int
    scored: int
    """Rows the judge scored (the others were unreadable and kept unchanged)."""
    flipped: int
    """Scored rows whose chosen and rejected were swapped."""
    ties: int
    """Scored rows with equal scores (at T = 0 they keep the source's order)."""
    mean_probability: float
    """Mean Bradley-Terry probability that the source's chosen is preferred (NaN: none scored)."""


def label_stream(seed: int, split: int) -> np.random.Generator:
    """The seeded stream of one split's label draws."""
    return np.random.default_rng([seed, RELABEL_STREAM, split])


def preference_probability(
    chosen: np.ndarray, rejected: np.ndarray, temperature: float
) -> np.ndarray:
    """P(source chosen preferred), (N,): ``sigmoid((chosen - rejected) / T)``; at T = 0, 1 where
    chosen scores higher, 0 where lower, 0.5 on a tie."""
    margin = np.asarray(chosen, dtype=np.float64) - np.asarray(rejected, dtype=np.float64)
    if temperature == 0:
        return 0.5 * (1.0 + np.sign(margin))
    return 0.5 * (1.0 + np.tanh(margin / (2.0 * temperature)))  # a sigmoid that cannot overflow


def draw_keep(
    chosen: np.ndarray, rejected: np.ndarray, temperature: float, rng: np.random.Generator
) -> np.ndarray:
    """(N,) bool: keep the source's order (True) or swap. One uniform is drawn per pair even at
    T = 0, so that a row's draw never depends on the temperature or on the other rows."""
    uniforms = rng.random(len(chosen))
    if temperature == 0:
        return np.asarray(chosen) >= np.asarray(rejected)
    return uniforms < preference_probability(chosen, rejected, temperature)


# ----------------------------------------------------------------------------------- texts
def _hh_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """Chat messages as HH-RLHF text (system turns read as the human's), which the judge splits
    back into its own chat format."""
    return "".join(f"\n\n{_HH_ROLES.get(m['role'], 'Human')}: {m['content']}" for m in messages)


def _conversational_texts(raw: Mapping[str, Any]) -> tuple[str, str, str] | None:
    chosen, rejected = raw["chosen"], raw["rejected"]
    if isinstance(raw.get("prompt"), list):
        prompt, answers = raw["prompt"], (chosen[-1], rejected[-1])
    elif chosen and rejected and chosen[:-1] == rejected[:-1]:
        prompt, answers = chosen[:-1], (chosen[-1], rejected[-1])
    else:
        return None
    return _hh_text(prompt) + ASSISTANT_MARKER, *(" " + answer["content"] for answer in answers)


def pair_texts(raw: Mapping[str, Any], kind: RowKind) -> tuple[str, str, str] | None:
    """(prompt, chosen response, rejected response) texts of a row for the judge; None when the
    row cannot be read (it is then left to the data module's bad-row checks)."""
    try:
        if kind == RowKind.explicit:
            texts = (raw["prompt"], raw["chosen"], raw["rejected"])
        elif kind == RowKind.implicit:
            split = split_implicit(raw["chosen"], raw["rejected"])
            texts = None if isinstance(split, BadReason) else split
        else:
            texts = _conversational_texts(raw)
    except (KeyError, TypeError, IndexError, AttributeError):
        return None
    if texts is None or not all(isinstance(text, str) for text in texts):
        return None
    return texts  # type: ignore[return-value]


def swapped(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with chosen and rejected exchanged, with every ``chosen*`` column and its
    ``rejected*`` partner (``chosen_ended``, ``reference_chosen_logps``, ...)."""
    out = dict(row)
    for name in row:
        partner = name.replace("chosen", "rejected")
        if "chosen" in name and partner in row:
            out[name], out[partner] = row[partner], row[name]
    return out


# ------------------------------------------------------------------------------ relabelling
def _score_all(score_fn: ScoreFn, texts: list[tuple[str, str, str]], chunk: int) -> np.ndarray:
    """(N, 2) scores of (chosen, rejected), scored ``chunk`` rows at a time with progress."""
    scores = np.zeros((len(texts), 2), dtype=np.float64)
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        prompts = [p for p, _, _ in part]
        for column in (0, 1):
            responses = [t[column + 1] for t in part]
            values = score_fn(prompts, responses).detach().double().cpu().numpy()
            scores[start : start + len(part), column] = values.reshape(-1)
        if len(texts) > chunk:
            log.info("relabel: scored %d/%d pairs", min(start + chunk, len(texts)), len(texts))
    return scores


def relabel_rows(
    rows: Sequence[Mapping[str, Any]],
    kind: RowKind,
    score_fn: ScoreFn,
    temperature: float,
    rng: np.random.Generator,
    chunk: int = 1024,
) -> tuple[list[dict[str, Any]], RelabelStats]:
    """The rows relabelled by ``score_fn``'s Bradley-Terry probabilities (see the module
    docstring), in the same order, and what was done."""
    if temperature < 0:
        raise ValueError(f"data.relabel_temperature: must be >= 0, got {temperature}")
    texts = [pair_texts(row, kind) for row in rows]
    readable = [i for i, t in enumerate(texts) if t is not None]
    scores = _score_all(score_fn, [texts[i] for i in readable], chunk)
    keep_all = draw_keep(scores[:, 0], scores[:, 1], temperature, rng) if readable else []
    out = [dict(row, chosen_judge_score=None, rejected_judge_score=None) for row in rows]
    for slot, (index, keep) in enumerate(zip(readable, keep_all, strict=True)):
        row = dict(rows[index], chosen_judge_score=float(scores[slot, 0]),
                   rejected_judge_score=float(scores[slot, 1]))
        out[index] = row if keep else swapped(row)
    probabilities = preference_probability(scores[:, 0], scores[:, 1], temperature)
    stats = RelabelStats(
        rows=len(rows),
        scored=len(readable),
        flipped=int(len(readable) - np.sum(keep_all)),
        ties=int(np.sum(scores[:, 0] == scores[:, 1])),
        mean_probability=float(probabilities.mean()) if readable else float("nan"),
    )
    return out, stats


def write_relabelled_pairs(
    data: DataConfig, score_fn: ScoreFn, temperature: float, seed: int, out_dir: Path
) -> dict[str, RelabelStats]:
    """Relabel every split of ``data`` (train, and eval when the source has one) and
    ``save_to_disk`` them in ``out_dir`` under the source's split names, with ``relabel.json``
    (the settings and each split's :class:`RelabelStats`)."""
    source = load_source(data)
    splits = {source.train_name: source.train}
    if source.eval is not None:
        splits[str(source.eval_name)] = source.eval
    sample = next(readable_rows(source.train), {})
    kind = resolve_kind(data.format, source.columns, sample)
    if kind == RowKind.sft:
        raise ValueError(f"data.relabel_with: {data.path} is an SFT corpus, not preference pairs")
    relabelled, stats = {}, {}
    for index, (name, split) in enumerate(splits.items()):
        rows, stats[name] = relabel_rows(
            list(readable_rows(split)), kind, score_fn, temperature, label_stream(seed, index)
        )
        relabelled[name] = datasets.Dataset.from_list(rows)
        log.info("relabel %s: %s", name, stats[name])
    datasets.DatasetDict(relabelled).save_to_disk(str(out_dir))
    summary = {"temperature": temperature, "seed": seed, "kind": kind.value,
               "splits": {name: asdict(value) for name, value in stats.items()}}
    (Path(out_dir) / "relabel.json").write_text(json.dumps(summary, indent=2))
    return stats


def relabel_with_judge(
    data: DataConfig, judge: str, temperature: float, seed: int, out_dir: Path
) -> None:
    """:func:`write_relabelled_pairs` scored by the judge ``judge`` (hub name or folder), on
    the GPU when there is one."""
    scorer = Judge.load(judge, batch_size=data.eval_batch_size)
    if torch.cuda.is_available():
        scorer.model.to("cuda")
    write_relabelled_pairs(data, scorer.score, temperature, seed, out_dir)
