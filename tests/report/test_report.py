"""`leash report`: reading run folders, the comparison table, its files and the frontier plot.

Every run folder here is written by hand (config, overrides, metrics, frontier), so each
expected figure in the table is a number chosen below.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from leash.report.main import main
from leash.report.plots import plot_frontier, points_above_frontier
from leash.report.runs import load_runs
from leash.report.table import (
    COLUMNS,
    MIB,
    row,
    shown_columns,
    to_csv,
    to_json,
    to_markdown,
    write_reports,
)

CONFIG = """\
algo:
  name: {algo}
  beta: {beta}
  max_steps: 7
data:
  name: exact
trainer:
  max_steps: ${{algo.max_steps}}
paths:
  output_dir: ${{hydra:runtime.output_dir}}
  cache_dir: ${{oc.env:LEASH_CACHE_DIR,${{oc.env:HOME}}/.cache/leash}}
seed: 0
run_name: ${{algo.name}}-${{data.name}}
"""

# A small concave frontier: optimal reward 0.1 at KL 0 rising to 0.5 at KL 0.4.
FRONTIER = {
    "beta": [None, 1.0, 0.5, 0.25],
    "kl": [0.0, 0.1, 0.2, 0.4],
    "reward": [0.1, 0.3, 0.4, 0.5],
}


def resources(peak_mib: float = 3.0, tokens_per_s: float = 1234.5) -> dict:
    """A resources block: a 2 MiB trained policy and a 2 MiB frozen reference."""
    return {
        "device": "cpu",
        "peak_memory_bytes": int(peak_mib * MIB),
        "peak_memory_kind": "cpu_peak_rss",
        "wall_time_s": 42.25,
        "tokens_per_s": tokens_per_s,
        "roles": {
            "policy": {"parameters": 2 * MIB, "trainable_parameters": 2 * MIB},
            "reference": {"parameters": 2 * MIB, "trainable_parameters": 0},
        },
    }


def write_run(
    folder: Path,
    algo: str = "dpo",
    beta: float = 0.1,
    overrides: tuple[str, ...] = (),
    metrics: dict | None = None,
    frontier: dict | None = None,
) -> Path:
    """A run folder as `leash train` leaves it; no metrics.json when ``metrics`` is None."""
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text(CONFIG.format(algo=algo, beta=beta))
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in (f"algo={algo}", *overrides)))
    if metrics is not None:
        payload = {"resources": resources(), "metrics": metrics}
        (folder / "metrics.json").write_text(json.dumps(payload))
    if frontier is not None:
        (folder / "frontier.json").write_text(json.dumps(frontier))
    return folder


DPO_METRICS = {
    "eval/exact_gold_reward": 0.25,
    "eval/gold_reward": 0.27,
    "eval/exact_kl": 0.15,
    "eval/kl": 0.16,
    "eval/frontier_gap": 0.1,
    "eval/implicit_rm_accuracy": 0.625,
    "eval/implicit_rm_gold_accuracy": 0.75,
    "val/accuracy": 0.5,  # not the implicit RM's accuracy: must not be shown for DPO
}


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    """A Hydra multirun of three DPO jobs (job 1 failed) plus an SFT and a reward-model run."""
    sweep = tmp_path / "multirun" / "2024-01-01_00-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    write_run(sweep / "2", overrides=("algo.beta=0.1",), metrics=DPO_METRICS, frontier=FRONTIER)
    write_run(sweep / "1", beta=0.3, overrides=("algo.beta=0.3",))
    sampled = {"eval/kl": 0.01, "val/accuracy": 0.4}  # not a preference accuracy here
    write_run(sweep / "10", beta=0.5, overrides=("algo.beta=0.5",), metrics=sampled)
    sft = {"eval/exact_gold_reward": 0.1, "eval/exact_kl": 0.0, "eval/kl": 0.0}
    write_run(tmp_path / "sft", algo="sft", metrics=sft, frontier=FRONTIER)
    write_run(
        tmp_path / "rm", algo="reward", metrics={"val/accuracy": 0.6, "val/gold_accuracy": 0.7}
    )
    return tmp_path


def by_name(root: Path) -> dict:
    return {run.name: run for run in load_runs(root)}


def test_multirun_lists_finished_and_failed_runs(multirun: Path) -> None:
    runs = load_runs(multirun)
    names = [run.name for run in runs]
    # natural order in the sweep (1, 2, 10); namesakes told apart by their differing override
    assert names == [
        "dpo-exact beta=0.3",
        "dpo-exact beta=0.1",
        "dpo-exact beta=0.5",
        "reward-exact",
        "sft-exact",
    ]
    status = {run.name: run.status for run in runs}
    assert status["dpo-exact beta=0.3"] == "failed"
    assert sum(s == "finished" for s in status.values()) == 4
    failed = row(runs[0])
    assert failed["method"] == "dpo-exact beta=0.3" and failed["status"] == "failed"
    assert all(value is None for key, value in failed.items() if key not in ("method", "status"))
    assert "| dpo-exact beta=0.3 | failed |" in to_markdown(runs)


def test_column_values_read_from_metrics_and_resources(multirun: Path) -> None:
    runs = by_name(multirun)
    dpo = row(runs["dpo-exact beta=0.1"])
    assert dpo["gold reward"] == 0.25  # the exact value wins over the sampled 0.27
    assert dpo["exact KL (nats)"] == 0.15
    assert dpo["sample KL (nats)"] == 0.16
    assert dpo["frontier gap"] == 0.1
    assert dpo["pref. accuracy"] == 0.625
    assert dpo["gold accuracy"] == 0.75
    assert dpo["peak memory (MiB)"] == 3.0
    assert dpo["memory kind"] == "cpu_peak_rss"
    assert dpo["parameters (MiB)"] == 4.0  # policy + reference
    assert dpo["trainable (MiB)"] == 2.0
    assert dpo["tokens/s"] == 1234.5
    assert dpo["wall time (s)"] == 42.25
    rm = row(runs["reward-exact"])
    assert (rm["pref. accuracy"], rm["gold accuracy"]) == (0.6, 0.7)
    assert rm["gold reward"] is None
    sampled_only = row(runs["dpo-exact beta=0.5"])
    assert sampled_only["sample KL (nats)"] == 0.01 and sampled_only["pref. accuracy"] is None


def test_config_interpolations(multirun: Path) -> None:
    config = by_name(multirun)["sft-exact"].config
    assert config["run_name"] == "sft-exact"
    assert config["trainer"]["max_steps"] == 7
    # resolver calls would describe this process, not the run: kept as written
    assert config["paths"]["output_dir"] == "${hydra:runtime.output_dir}"
    assert config["paths"]["cache_dir"].startswith("${oc.env:LEASH_CACHE_DIR")


def test_namesakes_with_equal_overrides_get_their_folder(tmp_path: Path) -> None:
    write_run(tmp_path / "a", metrics={})
    write_run(tmp_path / "b", metrics={})
    assert sorted(by_name(tmp_path)) == ["dpo-exact [a]", "dpo-exact [b]"]


def test_parent_of_runs_is_not_a_failed_run(tmp_path: Path) -> None:
    write_run(tmp_path / "compare")  # e.g. a driver job with its stages inside
    write_run(tmp_path / "compare" / "stage", metrics={})
    assert [run.path.name for run in load_runs(tmp_path)] == ["stage"]


def markdown_cells(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_csv_json_markdown_agree(multirun: Path) -> None:
    runs = load_runs(multirun)
    csv_rows = list(csv.DictReader(io.StringIO(to_csv(runs))))
    json_runs = json.loads(to_json(runs))["runs"]
    md_rows = markdown_cells(to_markdown(runs))
    assert len(csv_rows) == len(json_runs) == len(md_rows) == len(runs)
    for csv_row, json_run, md_row in zip(csv_rows, json_runs, md_rows, strict=True):
        assert json_run["metrics"] == next(r for r in runs if r.name == json_run["name"]).metrics
        for column, md_cell in zip(shown_columns(runs), md_row, strict=True):
            value = json_run["row"][column.header]
            assert md_cell == column.text(value)
            if value is None:
                assert csv_row[column.header] == ""
            elif isinstance(value, float):
                assert float(csv_row[column.header]) == value
            else:
                assert csv_row[column.header] == value
    headers = [c.header for c in shown_columns(runs)]
    assert md_rows[1][headers.index(COLUMNS[2].header)] == "0.250"
    assert md_rows[1][8] == "3"
    # The markdown leaves out exactly the columns no run has a value in (CSV keeps them all).
    hidden = [c for c in COLUMNS if c.header not in headers]
    assert hidden and all(run["row"][c.header] is None for c in hidden for run in json_runs)


def test_write_reports_atomically(multirun: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = write_reports(load_runs(multirun), multirun, out, notes=["a note"])
    assert sorted(p.name for p in written) == ["report.md", "results.csv", "results.json"]
    assert sorted(p.name for p in out.iterdir()) == ["report.md", "results.csv", "results.json"]
    report = (out / "report.md").read_text()
    assert "5 runs" in report and "1 failed" in report
    assert "eval/exact_gold_reward" in report and "- a note" in report


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frontier_png_is_written(multirun: Path, tmp_path: Path) -> None:
    second = dict(FRONTIER, reward=[0.2, 0.35, 0.45, 0.55])  # a run with another reference
    write_run(multirun / "other", algo="ipo", metrics=DPO_METRICS, frontier=second)
    plot = plot_frontier(load_runs(multirun), tmp_path / "frontier.png")
    assert plot is not None and is_png(plot.path)
    assert "curve 2: frontier.json of ipo-exact" in plot.source


def test_frontier_without_points(tmp_path: Path) -> None:
    write_run(tmp_path / "crashed", frontier=FRONTIER)  # evaluated, then died: no metrics.json
    plot = plot_frontier(load_runs(tmp_path), tmp_path / "frontier.png")
    assert plot is not None and is_png(plot.path)


def test_nothing_to_plot(tmp_path: Path) -> None:
    write_run(tmp_path / "rm", algo="reward", metrics={"val/accuracy": 0.6})
    assert plot_frontier(load_runs(tmp_path), tmp_path / "frontier.png") is None
    assert not (tmp_path / "frontier.png").exists()


def test_points_above_frontier(tmp_path: Path) -> None:
    points = {  # (exact KL, exact reward); the frontier at KL 0.2 is 0.4, at 0.3 it is 0.45
        "above": (0.2, 0.45),
        "below": (0.2, 0.35),
        "on": (0.3, 0.45),
    }
    for name, (kl, reward) in points.items():
        metrics = {"eval/exact_kl": kl, "eval/exact_gold_reward": reward}
        write_run(tmp_path / name, algo=name, metrics=metrics, frontier=FRONTIER)
    # no frontier.json of its own: compared with the only one the runs share
    orphan = {"eval/exact_kl": 0.1, "eval/exact_gold_reward": 0.31}
    write_run(tmp_path / "orphan", algo="orphan", metrics=orphan)
    # sampled points are noisy estimates: never flagged
    write_run(tmp_path / "noisy", algo="noisy", metrics={"eval/kl": 0.0, "eval/gold_reward": 9.0})
    flagged = points_above_frontier(load_runs(tmp_path), tolerance=1e-3)
    assert sorted(run.algo for run in flagged) == ["above", "orphan"]


def test_main_prints_and_writes(multirun: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main([str(multirun), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "dpo-exact beta=0.3" in printed and "failed" in printed
    assert "wrote report.md, results.csv, results.json" in printed and f"to {out}" in printed
    table = printed.split("wrote ")[0].splitlines()  # wide columns go to the files only
    assert max(len(line) for line in table) <= 100, printed
    for name in ("report.md", "results.csv", "results.json", "frontier.png", "cost.png"):
        assert (out / name).is_file(), name
    assert is_png(out / "frontier.png") and is_png(out / "cost.png")


def test_main_without_runs_exits_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "not-a-run").mkdir()
    assert main([str(tmp_path)]) == 2
    assert "no runs under" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "report.md").exists()
