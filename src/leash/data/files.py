"""Reading a user's own data files (``data.source=files``) into raw rows, defects and all.

JSON lines, JSON, CSV and Parquet are read here rather than through ``datasets``, whose builders
stop a whole load at the first malformed line with a traceback and force one Arrow type per
column (a number among texts ends the load too). Here every record keeps its own values, so a
bad one becomes a counted bad row (:class:`~leash.data.formats.BadReason`) that
``data.bad_rows`` decides about, like any other:

- a JSON line that does not parse, or is not one object: ``malformed_json``;
- a line whose bytes are not UTF-8: ``not_utf8``;
- a value of the wrong type (a number where text is expected) or a column missing from some
  rows are the row formats' own reasons (``not_text``, ``missing_field``).

What makes a whole file unusable is one sentence naming the file (and the line where known),
raised as :class:`~leash.data.errors.DataError`: no rows at all, a JSON document that is not a
list of rows, a CSV that is not UTF-8 or whose rows do not fit its header, a Parquet file Arrow
cannot read.

Row numbers: the rows of a split are numbered from 0 in file order (blank lines are not rows),
across the files of a glob in sorted order; a bad-row report's "row N" counts the same way.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from leash.config.validation import DATA_FILE_SUFFIXES, data_path_matches
from leash.data.errors import DataError
from leash.data.formats import ENDED_COLUMNS, BadReason

log = logging.getLogger(__name__)

RawRow = dict[str, Any] | BadReason
"""A record as read, or the reason it could not be read as one."""


def matching_files(pattern: str) -> list[Path]:
    """The files a ``data.path`` (a path or a glob) names, sorted; an error if there are none."""
    files = [Path(p) for p in data_path_matches(pattern) if Path(p).is_file()]
    if not files:
        raise DataError(f"data.path: no file matches {pattern!r}")
    return files


def read_data_files(pattern: str) -> tuple[list[RawRow], list[str]]:
    """Every record of the files ``pattern`` names, and the columns seen (first-seen order)."""
    rows: list[RawRow] = []
    for path in matching_files(pattern):
        found = read_data_file(path)
        if not found:
            raise DataError(f"data.path: {path} holds no rows")
        rows.extend(found)
    columns = dict.fromkeys(name for row in rows if isinstance(row, dict) for name in row)
    return rows, list(columns)


def read_data_file(path: Path) -> list[RawRow]:
    """The records of one file, by its extension."""
    suffix = path.suffix.lower()
    if suffix not in DATA_FILE_SUFFIXES:
        raise DataError(
            f"data.path: cannot tell the file type of {path}; "
            f"expected one of {list(DATA_FILE_SUFFIXES)}"
        )
    if suffix == ".parquet":
        return _parquet_rows(path)
    data = path.read_bytes()
    if suffix == ".csv":
        return _csv_rows(path, data)
    if suffix == ".json":
        document = _json_document(path, data)
        if document is not None:
            return document
    return _json_lines(path, data)


# ------------------------------------------------------------------------------------- JSON
def _json_document(path: Path, data: bytes) -> list[RawRow] | None:
    """A ``.json`` file holding one document: its list of records (None when the file is JSON
    lines instead, as ``datasets`` also accepts in ``.json`` files)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(document, dict) and len(data.strip().splitlines()) == 1:
        return [document]  # a one-line file of JSON lines
    if not isinstance(document, list):
        raise DataError(
            f"data.path: {path} holds one JSON {type(document).__name__}, not rows: expected a "
            "list of objects, or one object per line (JSON lines)"
        )
    return [row if isinstance(row, dict) else BadReason.malformed_json for row in document]


def _json_lines(path: Path, data: bytes) -> list[RawRow]:
    """One record per non-blank line; the first unreadable line is logged with its number."""
    rows: list[RawRow] = []
    first_problem = None
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        record, problem = _json_line(line)
        rows.append(record)
        if problem and first_problem is None:
            first_problem = f"line {number}: {problem}"
    if first_problem is not None:
        bad = sum(isinstance(row, BadReason) for row in rows)
        log.warning("data: %s: %d unreadable line(s); the first is %s", path, bad, first_problem)
    return rows


def _json_line(line: bytes) -> tuple[RawRow, str | None]:
    """A line's record, or its reason and the parser's words."""
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as error:
        return BadReason.not_utf8, f"not UTF-8 ({error.reason} at byte {error.start})"
    except json.JSONDecodeError as error:
        return BadReason.malformed_json, f"not JSON ({error})"
    if not isinstance(record, dict):
        return BadReason.malformed_json, f"a JSON {type(record).__name__}, not an object"
    return record, None


# -------------------------------------------------------------------------------------- CSV
def _csv_rows(path: Path, data: bytes) -> list[RawRow]:
    """The rows of a CSV file with a header line; every value is text, an empty cell None."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"data.path: {path} is not UTF-8 text (line {line}: {error.reason}); save it as UTF-8"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[RawRow] = []
    for record in reader:
        if None in record or None in record.values():
            raise DataError(
                f"data.path: {path} line {reader.line_num}: {_count_fields(record)} fields, "
                f"the header has {len(reader.fieldnames or [])}"
            )
        rows.append({name: _csv_value(name, value) for name, value in record.items()})
    return rows


def _csv_value(column: str, text: str) -> Any:
    """A CSV cell: None when empty; an ``ended`` flag's ``true``/``false`` as a bool."""
    if text == "":
        return None
    if column in ENDED_COLUMNS and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _count_fields(record: dict[str | None, Any]) -> int:
    """How many fields a CSV line held (DictReader files extras under None, pads with None)."""
    extra = record.get(None) or []
    return sum(value is not None for key, value in record.items() if key is not None) + len(extra)


# ---------------------------------------------------------------------------------- Parquet
def _parquet_rows(path: Path) -> list[RawRow]:
    import pyarrow
    import pyarrow.parquet

    try:
        return pyarrow.parquet.read_table(path).to_pylist()
    except (pyarrow.ArrowException, OSError) as error:
        raise DataError(f"data.path: {path} is not a readable Parquet file ({error})") from None
