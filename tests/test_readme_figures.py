"""Every figure in a README table is the committed result it cites, to the digits it shows.

A table with figures carries, on the line before it, ``<!-- results: PATH -->``: a CSV that a
documented command wrote. Its first column names the rows (the CSV's first column); every other
header is a CSV column, or a CSV column ``X`` shown as ``X mean ± X ci95`` (a per-method table
over seeds). A number shown with d decimals must be the CSV's value rounded to d decimals; a
blank cell a blank value. Reading files only, this test trains nothing, and a code change that
moves the numbers cannot leave the prose stale: regenerating the results fails it until the
README is updated. Sentences with figures sit between ``<!-- generated: NAME -->`` and
``<!-- /generated -->``: they are what ``summary()`` of ``experiments/NAME.py`` writes from the
committed results, checked the same way.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "experiments" / "README.md"]
MARKER = re.compile(r"^<!-- results: (\S+) -->$")
NUMBER = re.compile(r"^-?\d+(?:\.(\d+))?$")
HAS_FIGURE = re.compile(r"\d\.\d|\b\d{2,}\b")


@dataclass
class Table:
    """A markdown table of a README: where it is, what it cites, its header and its rows."""

    readme: Path
    line: int
    cites: Path | None
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables_of(readme: Path) -> list[Table]:
    """The markdown tables of a README, each with the results file it cites (if any)."""
    lines = readme.read_text().splitlines()
    tables, number = [], 0
    while number < len(lines):
        if not lines[number].startswith("|"):
            number += 1
            continue
        start = number
        while number < len(lines) and lines[number].startswith("|"):
            number += 1
        marker = MARKER.match(lines[start - 1].strip()) if start else None
        cites = readme.parent / marker.group(1) if marker else None
        body = [_cells(line) for line in lines[start + 2:number]]
        tables.append(Table(readme, start + 1, cites, _cells(lines[start]), body))
    return tables


def _matches(shown: str, value: str) -> bool:
    """Whether a shown cell is the CSV value (a number rounded to the digits shown)."""
    if shown == "" or value == "":
        return shown == value
    number = NUMBER.match(shown)
    if number is None:
        return shown == value
    decimals = len(number.group(1) or "")
    return format(float(value), f".{decimals}f") == shown


def problems_of(table: Table) -> list[str]:
    """Every cell of the table that is not what its results file holds."""
    with table.cites.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    key = next(iter(rows[0]))
    by_key = {row[key]: row for row in rows}
    where = f"{table.readme.name}:{table.line}"
    problems = []
    for cells in table.rows:
        found = by_key.get(cells[0])
        if found is None:
            problems.append(f"{where}: no row {cells[0]!r} in {table.cites}")
            continue
        for header, shown in zip(table.header[1:], cells[1:], strict=True):
            parts = [part.strip() for part in shown.split("±")] if "±" in shown else [shown]
            columns = [header] if len(parts) == 1 and header in found else [
                f"{header} mean", f"{header} ci95"][:len(parts)]
            for column, part in zip(columns, parts, strict=True):
                if column not in found:
                    problems.append(f"{where}: no column {column!r} in {table.cites}")
                elif not _matches(part, found[column]):
                    problems.append(f"{where}: {cells[0]} / {column}: README {part!r}, "
                                    f"{table.cites.name} {found[column]!r}")
    return problems


TABLES = [table for readme in READMES for table in tables_of(readme)]


@pytest.mark.parametrize("table", TABLES, ids=[f"{t.readme.name}:{t.line}" for t in TABLES])
def test_a_readme_table_with_figures_equals_the_results_it_cites(table):
    if table.cites is None:
        figures = [cell for row in table.rows for cell in row if HAS_FIGURE.search(cell)]
        assert not figures, f"{table.readme.name}:{table.line} shows figures {figures[:3]} but "
        "cites no results file (<!-- results: PATH --> on the line before it)"
        return
    assert table.cites.is_file(), table.cites
    assert problems_of(table) == []


def test_the_check_fails_when_a_committed_figure_changes(tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("method,gold reward mean,gold reward ci95,peak memory (MiB)\n"
                       "dpo,0.6592,0.0123,883.08\n")
    readme = tmp_path / "README.md"
    text = ("<!-- results: results.csv -->\n| method | gold reward | peak memory (MiB) |\n"
            "|---|---:|---:|\n| dpo | {reward} | {memory} |\n")
    readme.write_text(text.format(reward="0.659 ± 0.012", memory="883"))
    (table,) = tables_of(readme)
    assert problems_of(table) == []
    for reward, memory in [("0.660 ± 0.012", "883"), ("0.659 ± 0.013", "883"),
                           ("0.659 ± 0.012", "884"), ("0.66 ± 0.01", "883.2")]:
        readme.write_text(text.format(reward=reward, memory=memory))
        (table,) = tables_of(readme)
        assert problems_of(table), (reward, memory)


def _writer():
    """experiments/write_summaries.py, which finds the blocks and writes their text."""
    spec = importlib.util.spec_from_file_location(
        "write_summaries", REPO / "experiments" / "write_summaries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WRITER = _writer()


def generated_blocks() -> list[tuple[Path, str, str]]:
    """(README, script name, text) of every generated block of the READMEs."""
    return [(readme, match.group(2), match.group(3))
            for readme in READMES for match in WRITER.BLOCK.finditer(readme.read_text())]


BLOCKS = generated_blocks()


def test_the_readmes_have_their_generated_blocks():
    names = {name for _, name, _ in BLOCKS}
    assert {"compare_summary", "reward_kl_frontier", "reference_modes", "beta_lr_grid",
            "stability", "online_vs_offline", "overoptimization", "coverage",
            "support_matrix", "sft_cold_vs_cached", "real_text_offline"} <= names, names


@pytest.mark.parametrize("readme, name, text", BLOCKS,
                         ids=[f"{readme.name}:{name}" for readme, name, _ in BLOCKS])
def test_a_generated_block_is_what_its_script_writes_from_the_committed_results(
        readme, name, text):
    assert text == WRITER.block_text(name), (
        f"{readme.name}: the block `generated: {name}` is stale: "
        "`python experiments/write_summaries.py` rewrites it")


def test_a_generated_block_goes_stale_when_a_committed_figure_changes(tmp_path):
    script = WRITER.load_script("stability")
    committed = REPO / "experiments" / "results" / "stability" / "stability_summary.csv"
    changed = tmp_path / "stability_summary.csv"
    rows = list(csv.DictReader(committed.open(newline="")))
    typical = "seed sd of gold reward (median)"
    rows[0][typical] = f"{float(rows[0][typical]) + 0.01:.4f}"  # DPO's, 0.01 higher
    with changed.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert script.summary(committed) == WRITER.summary_of("stability")
    assert script.summary(changed) != script.summary(committed)


def test_the_writer_refreshes_a_cited_table_to_what_the_check_accepts(tmp_path):
    results = tmp_path / "results.csv"
    results.write_text("method,kind,gold reward mean,gold reward ci95,peak memory (MiB),gap,below\n"
                       "dpo,offline,0.6592,0.0123,883.08,,45/60\n"
                       "ppo,online,0.7001,0.0321,901.4,0.2557,3/60\n")
    readme = tmp_path / "README.md"
    stale = ("<!-- results: results.csv -->\n| method | kind | gold reward | peak memory (MiB) | "
             "gap | below |\n|---|---|---:|---:|---:|---:|\n"
             "| dpo | offline | 0.600 ± 0.100 | 800 | 0.111 | 48/60 |\n"
             "| ppo | online | 0.5 ± 0.1 | 900.0 |  | 3/60 |\n")
    fresh = WRITER.refresh_tables(stale, tmp_path)
    assert fresh.splitlines()[3:] == ["| dpo | offline | 0.659 ± 0.012 | 883 |  | 45/60 |",
                                      "| ppo | online | 0.7 ± 0.0 | 901.4 | 0.256 | 3/60 |"]
    readme.write_text(fresh)
    (table,) = tables_of(readme)
    assert problems_of(table) == []
