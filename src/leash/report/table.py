"""The comparison table: one row per run, one typed :class:`Column` per figure.

Every output (markdown, CSV, JSON, the console) is built from :data:`COLUMNS`, so they always
show the same figures. Failed runs keep their row, with blanks where figures would be.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.table import Table
from rich.text import Text

from leash.atomic import write_text_atomic
from leash.report.runs import FINISHED, RunRecord

Value = float | str | None
MIB = 2**20


@dataclass(frozen=True)
class Column:
    """One figure of the table: what it is called, its unit, how to read and print it."""

    name: str
    """Short header, e.g. ``exact KL``."""
    unit: str
    """Unit shown in the header (empty for unitless figures)."""
    read: Callable[[RunRecord], Value]
    """The value of one run (None when the run lacks it)."""
    fmt: str
    """Format spec for markdown and the console (``.3f``); empty for text."""
    source: str
    """Where the value comes from, for report.md."""

    @property
    def header(self) -> str:
        """The header with its unit, e.g. ``exact KL (nats)``."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def text(self, value: Value) -> str:
        """A value of this column as printed in markdown and on the console ("" when absent)."""
        if value is None:
            return ""
        return format(value, self.fmt) if self.fmt else str(value)


def _metric(*keys: str) -> Callable[[RunRecord], float | None]:
    """Reader of the first of ``keys`` the run logged."""

    def read(run: RunRecord) -> float | None:
        return next((v for v in map(run.metric, keys) if v is not None), None)

    return read


def _preference_accuracy(run: RunRecord) -> float | None:
    """Implicit-RM accuracy of DPO-family policies; the RM's own accuracy for reward models."""
    implicit = run.metric("eval/implicit_rm_accuracy")
    if implicit is not None or run.algo != "reward":
        return implicit
    return run.metric("val/accuracy")


def _resource(key: str, scale: float = 1.0) -> Callable[[RunRecord], Value]:
    """Reader of one field of a run's ``resources`` block (numbers divided by ``scale``)."""

    def read(run: RunRecord) -> Value:
        value = run.resources.get(key)
        if isinstance(value, int | float):
            return float(value) / scale
        return value

    return read


def _role_bytes(field_name: str) -> Callable[[RunRecord], float | None]:
    """Reader of one per-role byte count summed over the run's model roles, in MiB."""

    def read(run: RunRecord) -> float | None:
        roles = run.resources.get("roles") or {}
        if not roles:
            return None
        return sum(float(role.get(field_name, 0)) for role in roles.values()) / MIB

    return read


COLUMNS: list[Column] = [
    Column(
        name="method",
        unit="",
        read=lambda run: run.name,
        fmt="",
        source="the config's run_name, plus the overrides that tell apart runs of that name",
    ),
    Column(
        name="status",
        unit="",
        read=lambda run: run.status,
        fmt="",
        source="finished when the run wrote metrics.json, failed otherwise",
    ),
    Column(
        name="gold reward",
        unit="",
        read=_metric("eval/exact_gold_reward", "eval/gold_reward"),
        fmt=".3f",
        source="eval/exact_gold_reward (exact expectation over every response) when logged, "
        "else eval/gold_reward (mean over sampled responses)",
    ),
    Column(
        name="RM score",
        unit="",
        read=_metric("eval/rm_score"),
        fmt=".3f",
        source="eval/rm_score: mean proxy reward-model score of the sampled responses (for "
        "the SFT reference, eval/reference_rm_score of the runs evaluated against it)",
    ),
    Column(
        name="judge score",
        unit="",
        read=_metric("eval/judge_score"),
        fmt=".3f",
        source="eval/judge_score: mean score of the independent judge (eval.judge)",
    ),
    Column(
        name="win rate",
        unit="",
        read=_metric("eval/win_rate"),
        fmt=".3f",
        source="eval/win_rate: share of held-out samples the judge (else the proxy RM) scores "
        "above the reference's sample for the same prompt, ties counted as half",
    ),
    Column(
        name="win s.e.",
        unit="",
        read=_metric("eval/win_rate_se"),
        fmt=".3f",
        source="eval/win_rate_se: standard error of the win rate over prompts",
    ),
    Column(
        name="length",
        unit="tokens",
        read=_metric("eval/response_length"),
        fmt=".1f",
        source="eval/response_length: mean length of the sampled responses, EOS included",
    ),
    Column(
        name="exact KL",
        unit="nats",
        read=_metric("eval/exact_kl"),
        fmt=".3f",
        source="eval/exact_kl: exact mean KL(π ‖ π_ref) over the held-out prompts",
    ),
    Column(
        name="sample KL",
        unit="nats",
        read=_metric("eval/kl"),
        fmt=".3f",
        source="eval/kl: sequence-level k1 estimate of KL(π ‖ π_ref) on samples",
    ),
    Column(
        name="frontier gap",
        unit="",
        read=_metric("eval/frontier_gap"),
        fmt=".3f",
        source="eval/frontier_gap: optimal reward at the run's exact KL minus its exact reward",
    ),
    Column(
        name="pref. accuracy",
        unit="",
        read=_preference_accuracy,
        fmt=".3f",
        source="accuracy on held-out preference pairs: eval/implicit_rm_accuracy for every "
        "policy (its implicit reward β·log π/π_ref), val/accuracy for reward models",
    ),
    Column(
        name="gold accuracy",
        unit="",
        read=_metric("eval/implicit_rm_gold_accuracy", "val/gold_accuracy"),
        fmt=".3f",
        source="agreement with the gold reward's ranking of the held-out pairs: "
        "eval/implicit_rm_gold_accuracy or val/gold_accuracy",
    ),
    Column(
        name="peak memory",
        unit="MiB",
        read=_resource("peak_memory_bytes", MIB),
        fmt=".0f",
        source="resources.peak_memory_bytes, of the kind in the next column",
    ),
    Column(
        name="memory kind",
        unit="",
        read=_resource("peak_memory_kind"),
        fmt="",
        source="cuda_max_memory_allocated (GPU) or cpu_peak_rss (peak RSS of the process "
        "from the job's start: each job of a one-process sweep reports its own)",
    ),
    Column(
        name="parameters",
        unit="MiB",
        read=_role_bytes("parameters"),
        fmt=".2f",
        source="parameter bytes summed over the model roles (policy, reference, reward, critic)",
    ),
    Column(
        name="trainable",
        unit="MiB",
        read=_role_bytes("trainable_parameters"),
        fmt=".2f",
        source="trainable parameter bytes summed over the model roles",
    ),
    Column(
        name="tokens/s",
        unit="",
        read=_resource("tokens_per_s"),
        fmt=".0f",
        source="resources.tokens_per_s: real (unpadded) training tokens per second of training",
    ),
    Column(
        name="wall time",
        unit="s",
        read=_resource("wall_time_s"),
        fmt=".1f",
        source="resources.wall_time_s: from the job's setup to the end of training, model "
        "loading and evaluation included",
    ),
]


def row(run: RunRecord) -> dict[str, Value]:
    """One run's values by column header (a failed run has only its name and status)."""
    return {column.header: column.read(run) for column in COLUMNS}


def _cell(value: Value) -> str:
    """A CSV cell: full precision for numbers, empty for blanks."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def shown_columns(runs: list[RunRecord]) -> list[Column]:
    """The columns some run has a value for (the gold-reward columns vanish on real data, the
    judge's without a judge); CSV and JSON keep every column."""
    rows = [row(run) for run in runs]
    return [c for c in COLUMNS if any(values[c.header] is not None for values in rows)]


def _texts(run: RunRecord, columns: list[Column]) -> list[str]:
    values = row(run)
    return [column.text(values[column.header]) for column in columns]


def to_markdown(runs: list[RunRecord]) -> str:
    """The table in GitHub markdown (values formatted by each column's ``fmt``)."""
    columns = shown_columns(runs)
    lines = [
        "| " + " | ".join(c.header for c in columns) + " |",
        "| " + " | ".join("---" if c.fmt == "" else "---:" for c in columns) + " |",
    ]
    for run in runs:
        cells = [text.replace("|", "\\|") for text in _texts(run, columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(runs: list[RunRecord]) -> str:
    """The table as CSV, numbers at full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.header for c in COLUMNS])
    for run in runs:
        values = row(run)
        writer.writerow([_cell(values[c.header]) for c in COLUMNS])
    return buffer.getvalue()


def to_json(runs: list[RunRecord]) -> str:
    """The columns' definitions and every run: its table row and its whole record."""
    payload = {
        "columns": [{"header": c.header, "unit": c.unit, "source": c.source} for c in COLUMNS],
        "runs": [{"row": row(run), **run.to_dict()} for run in runs],
    }
    return json.dumps(payload, indent=2, default=str)


def to_rich(runs: list[RunRecord], title: str = "", names: Collection[str] | None = None) -> Table:
    """The table for the console (the columns named in ``names``, else all); failed rows in
    red."""
    table = Table(title=title or None, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = [c for c in shown_columns(runs) if names is None or c.name in names]
    for column in columns:
        table.add_column(column.header, justify="left" if column.fmt == "" else "right")
    for run in runs:
        cells = [Text(text) for text in _texts(run, columns)]  # a name's "[...]" is no markup
        table.add_row(*cells, style=None if run.status == FINISHED else "red")
    return table


def to_report_markdown(
    runs: list[RunRecord], root: Path, notes: list[str], sections: dict[str, str] | None = None
) -> str:
    """report.md: a summary line, the table, ``sections`` (title -> markdown), where each
    column comes from, and ``notes``."""
    failed = [run for run in runs if run.status != FINISHED]
    lines = [
        "# leash report",
        "",
        f"{len(runs)} runs under `{root}` ({len(runs) - len(failed)} finished, "
        f"{len(failed)} failed).",
        "",
        to_markdown(runs),
        *(part for title, text in (sections or {}).items() for part in (f"## {title}", "", text)),
        "## Where each column comes from",
        "",
        *(f"- **{c.header}**: {c.source}" for c in shown_columns(runs)),
    ]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {run.name} (`{run.path}`): {run.note}" for run in failed]
    if notes:
        lines += ["", "## Figures and checks", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def write_reports(
    runs: list[RunRecord],
    root: Path,
    out_dir: Path,
    notes: list[str],
    sections: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> list[Path]:
    """Write report.md (with ``sections``), results.csv, results.json and the ``extra`` files
    (name -> text), each atomically, into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        "report.md": to_report_markdown(runs, root, notes, sections),
        "results.csv": to_csv(runs),
        "results.json": to_json(runs),
        **(extra or {}),
    }
    for name, text in outputs.items():
        write_text_atomic(out_dir / name, text)
    return [out_dir / name for name in outputs]
