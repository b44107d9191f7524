"""`leash compare` end to end: every stage, one table, files that agree with each other."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from leash.pipeline.compare import STAGES


@pytest.mark.slow
def test_compare_runs_every_stage_and_writes_one_consistent_report(isolated_run):
    out = isolated_run / "compare"
    result = subprocess.run(
        [sys.executable, "-m", "leash", "compare", "--out", str(out), "debug=fast"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for name in ("report.md", "results.csv", "results.json", "frontier.png"):
        assert (out / name).exists(), name
    records = json.loads((out / "results.json").read_text())
    records = records["runs"] if isinstance(records, dict) else records
    assert len(records) == 5
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and all(row["status"] == "finished" for row in rows)
    gold = {row["method"]: row["gold reward"] for row in rows}
    report = (out / "report.md").read_text()
    for method, value in gold.items():
        assert method in report
        if value:  # the same figure in the CSV and the markdown table (3 decimals there)
            assert f"{float(value):.3f}" in report
    assert "above the optimal frontier" not in report
    # The SFT stage trained the policy once; every later stage reused it from the cache.
    log = "".join((out / stage / "console.log").read_text() for stage in STAGES)
    assert log.count("cache: reusing sft") >= 4
    assert "stage sft: not cached" not in log
    # The calm console: a board of the stages, the table within 100 columns, where the files are.
    printed = result.stdout.splitlines()
    assert len(printed) < 40, result.stdout
    assert [line.split()[:2] for line in printed[1:6]] == [["✓", stage] for stage in STAGES]
    table = printed[printed.index(next(line for line in printed if "runs under" in line)):]
    assert max(len(line) for line in table[:8]) <= 100, result.stdout

