"""`leash compare` end to end: every stage, one table, files that agree with each other."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest


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
    log = result.stdout + result.stderr
    assert log.count("cache: reusing sft") >= 4
    assert "stage sft: not cached" not in log


@pytest.mark.slow
def test_compare_over_seeds_reports_each_method_over_its_seeds(isolated_run):
    """Two seeds of DPO sharing their upstream data: one folder per seed, the seeds' mean and
    interval, and the upstream SFT policy trained once for both."""
    out = isolated_run / "compare"
    result = subprocess.run(
        [sys.executable, "-m", "leash", "compare", "--out", str(out), "--stages", "dpo",
         "debug=fast", "seeds=[0,1]", "upstream.seed=shared"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    for seed in (0, 1):
        assert (out / f"seed_{seed}" / "dpo" / "metrics.json").exists()
    with (out / "results_by_method.csv").open() as handle:
        methods = {row["method"]: row for row in csv.DictReader(handle)}
    assert set(methods) == {"dpo-exact"}
    assert methods["dpo-exact"]["seeds"] == "0 1" and methods["dpo-exact"]["gold reward n"] == "2"
    runs = json.loads((out / "results.json").read_text())["runs"]
    dpo = [run for run in runs if run["algo"] == "dpo"]
    assert len({run["artifacts"]["reference"] for run in dpo}) == 1  # one shared SFT policy
    assert len({run["metrics"]["eval/exact_gold_reward"] for run in dpo}) == 2  # own noise
    assert "Over seeds: mean" in (out / "report.md").read_text()
