"""A user's bad data file gets one sentence naming the file (and line) and the problem, or its
bad records are counted under a named reason: never a traceback from a file parser."""

from __future__ import annotations

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from composing import composer, job_error
from leash.config import BadRows, DataConfig, DataSource
from leash.data.datamodule import PreferenceDataModule
from leash.data.errors import DataError
from leash.data.files import read_data_files
from leash.data.formats import BadReason
from leash.models.tokenizers import build_word_tokenizer

WORDS = ["hi", "there", "yes", "no", "why", "because", "ok"]
GOOD = [{"prompt": f"hi {w}", "chosen": "yes", "rejected": "no"} for w in WORDS]


@pytest.fixture(scope="module")
def tok():
    return build_word_tokenizer(WORDS)


def load(tok, path: Path, **overrides) -> PreferenceDataModule:
    cfg = DataConfig(name="test", source=DataSource.files, path=str(path), eval_fraction=0.3,
                     **overrides)
    module = PreferenceDataModule(cfg, tok, view="pairs", seed=0)
    module.setup()
    return module


def jsonl(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"\n".join([*(json.dumps(r).encode() for r in GOOD), *lines]) + b"\n")
    return path


def refused(tok, path: Path, **overrides) -> str:
    with pytest.raises(DataError) as raised:
        load(tok, path, **overrides)
    return str(raised.value)


# ------------------------------------------------------------------- counted bad records
def test_a_malformed_json_line_is_a_counted_bad_row_and_its_line_is_logged(tok, tmp_path, caplog):
    path = jsonl(tmp_path / "pairs.jsonl", b'{"prompt": "hi", "chosen": "yes",', b"[1, 2]")
    with caplog.at_level(logging.WARNING, logger="leash.data"):
        module = load(tok, path)
    assert module.bad_rows.count(BadReason.malformed_json) == 2
    assert f"{path}: 2 unreadable line(s); the first is line {len(GOOD) + 1}: not JSON" in (
        caplog.text
    )
    assert sum(split.rows_kept for split in module.bad_rows.splits) == len(GOOD)


def test_a_malformed_line_under_bad_rows_error_is_refused_naming_the_reason(tok, tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", b"not json")
    message = refused(tok, path, bad_rows=BadRows.error)
    assert message.startswith("data.bad_rows=error and the data has bad rows")
    assert f"malformed_json=1 (first: row {len(GOOD)}" in message


def test_non_utf8_bytes_in_a_json_line_are_a_counted_bad_row(tok, tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", '{"prompt": "caf\u00e9"}'.encode("latin-1"))
    assert load(tok, path).bad_rows.count(BadReason.not_utf8) == 1


def test_numbers_where_text_is_expected_are_not_text(tok, tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", json.dumps(
        {"prompt": "hi", "chosen": 3, "rejected": "no"}).encode())
    assert load(tok, path).bad_rows.count(BadReason.not_text) == 1


def test_a_column_present_in_some_rows_only_makes_the_others_missing_a_field(tok, tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", json.dumps({"prompt": "hi", "chosen": "yes"}).encode())
    assert load(tok, path).bad_rows.count(BadReason.missing_field) == 1


# --------------------------------------------------------------------- unusable files
def test_a_file_without_rows_is_refused_naming_it(tok, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\n\n")
    assert refused(tok, path) == f"data.path: {path} holds no rows"
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected\n")
    assert refused(tok, path) == f"data.path: {path} holds no rows"


def test_a_missing_column_is_refused_naming_the_file_and_the_columns(tok, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["prompt"], "chosen": r["chosen"]}) + "\n"
                            for r in GOOD))
    message = refused(tok, path)
    assert message.startswith(f"data: {path}: cannot detect the row format from columns")
    assert "['chosen', 'prompt']" in message


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_csv_with_a_wrong_header_is_refused_naming_its_columns(tok, tmp_path):
    rows = [[r["prompt"], r["chosen"], r["rejected"]] for r in GOOD]
    path = write_csv(tmp_path / "pairs.csv", ["question", "good", "bad"], rows)
    message = refused(tok, path)
    assert message.startswith(f"data: {path}: cannot detect the row format from columns []")
    ok = write_csv(tmp_path / "ok.csv", ["prompt", "chosen", "rejected"], rows)
    assert sum(split.rows_kept for split in load(tok, ok).bad_rows.splits) == len(GOOD)


def test_a_csv_line_with_the_wrong_number_of_fields_is_refused_naming_the_line(tok, tmp_path):
    path = write_csv(tmp_path / "pairs.csv", ["prompt", "chosen", "rejected"],
                     [["hi", "yes", "no"], ["hi there", "yes"]])
    assert refused(tok, path) == f"data.path: {path} line 3: 2 fields, the header has 3"


def test_a_csv_that_is_not_utf8_is_refused_naming_the_line(tok, tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"prompt,chosen,rejected\nhi,yes,no\ncaf\xe9,yes,no\n")
    message = refused(tok, path)
    assert message.startswith(f"data.path: {path} is not UTF-8 text (line 3: invalid")


def test_a_json_document_that_is_not_a_list_of_rows_is_refused(tok, tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps({"data": GOOD}, indent=2))
    assert refused(tok, path).startswith(f"data.path: {path} holds one JSON dict, not rows")
    path.write_text(json.dumps(GOOD, indent=2))  # a list of rows is fine
    assert sum(split.rows_kept for split in load(tok, path).bad_rows.splits) == len(GOOD)


def test_a_parquet_file_arrow_cannot_read_is_refused(tok, tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    assert refused(tok, path).startswith(f"data.path: {path} is not a readable Parquet file")
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(GOOD), path)
    assert read_data_files(str(path)) == (GOOD, ["prompt", "chosen", "rejected"])


def test_empty_untyped_or_folder_data_paths_are_refused_before_anything_loads(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "pairs.txt").write_text("hi")
    (tmp_path / "shards.jsonl").mkdir()
    problems = {
        "empty.jsonl": f"data.path: {tmp_path / 'empty.jsonl'} is empty",
        "pairs.txt": f"data.path: cannot tell the file type of {tmp_path / 'pairs.txt'}",
        "shards.jsonl": f"data.path: {tmp_path / 'shards.jsonl'} is a folder",
    }
    with composer(tmp_path / "run") as compose_job:
        for name, problem in problems.items():
            overrides = ["algo=sft", "data=files", f"data.path={tmp_path / name}"]
            assert problem in job_error(compose_job, overrides)


@pytest.mark.slow
def test_a_stage_that_cannot_read_the_data_ends_the_run_with_its_own_sentence(isolated_run):
    """DPO's SFT stage is a child process: its one-line error is the parent's last line, and the
    parent exits with the child's status (2, unusable data)."""
    path = isolated_run / "pairs.json"
    path.write_text(json.dumps({"data": GOOD}, indent=2))
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", "algo=dpo", "data=files", f"data.path={path}",
         f"hydra.run.dir={isolated_run / 'run'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("leash train: the sft stage (run folder ")
    assert last.endswith(f"failed: data.path: {path} holds one JSON dict, not rows: expected a "
                         "list of objects, or one object per line (JSON lines)")
    assert "Traceback" not in result.stdout + result.stderr


def test_a_fixed_split_seed_holds_out_the_same_prompts_for_every_seed(tok, tmp_path):
    rows = [{"prompt": f"{a} {b}", "chosen": "yes", "rejected": "no"}
            for a in WORDS for b in WORDS]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def held_out(seed: int, split_seed: int | None) -> list[str]:
        cfg = DataConfig(name="t", source=DataSource.files, path=str(path), eval_fraction=0.3)
        module = PreferenceDataModule(cfg, tok, view="pairs", seed=seed, split_seed=split_seed)
        module.setup()
        return [pair.prompt for pair in module.pairs("eval")]

    assert held_out(1, split_seed=0) == held_out(2, split_seed=0) == held_out(0, None)
    assert held_out(1, None) != held_out(2, None)
