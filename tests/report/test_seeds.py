"""Methods over seeds: the t quantile against printed tables, mean/sd/interval by hand, and a
report of a seed multirun with its per-method table, files and figure."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from leash.report.main import main
from leash.report.runs import load_runs
from leash.report.seeds import method_name, methods_over_seeds, spread, t_quantile
from report.test_report import FRONTIER, write_run


@pytest.mark.parametrize(("dof", "printed"), [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776),
                                              (10, 2.228), (30, 2.042), (100, 1.984)])
def test_t_quantile_matches_the_printed_table(dof, printed):
    assert t_quantile(0.975, dof) == pytest.approx(printed, abs=5e-4)


def test_t_quantile_refuses_what_it_cannot_give():
    with pytest.raises(ValueError, match="dof >= 1"):
        t_quantile(0.975, 0)


def test_spread_by_hand():
    # mean 0.3; deviations -0.1, 0, 0.1 -> sd sqrt(0.02 / 2) = 0.1; half-width 4.303 * 0.1 / sqrt 3
    found = spread([0.2, 0.3, 0.4])
    assert (found.n, found.mean, found.sd) == (3, pytest.approx(0.3), pytest.approx(0.1))
    assert found.ci95 == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-6)
    assert found.text(".3f") == "0.300 ± 0.248"
    alone = spread([0.5])
    assert (alone.sd, alone.ci95, alone.text(".2f")) == (None, None, "0.50")


def seeded_run(folder: Path, seed: int, beta: float, reward: float, kl: float) -> None:
    metrics = {"eval/exact_gold_reward": reward, "eval/exact_kl": kl, "eval/frontier_gap": 0.1}
    write_run(folder, beta=beta, overrides=(f"algo.beta={beta}", f"seed={seed}"),
              metrics=metrics, frontier=FRONTIER)
    config = folder / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("seed: 0", f"seed: {seed}"))


@pytest.fixture
def seed_sweep(tmp_path: Path) -> Path:
    """DPO at β = 0.1 over three seeds, at β = 0.3 over two, and one SFT run."""
    for job, (seed, reward, kl) in enumerate([(0, 0.2, 0.1), (1, 0.3, 0.2), (2, 0.4, 0.3)]):
        seeded_run(tmp_path / "sweep" / str(job), seed, 0.1, reward, kl)
    for job, seed in enumerate([0, 1], start=3):
        seeded_run(tmp_path / "sweep" / str(job), seed, 0.3, 0.25, 0.05)
    write_run(tmp_path / "sft", algo="sft", metrics={"eval/exact_gold_reward": 0.1,
                                                     "eval/exact_kl": 0.0}, frontier=FRONTIER)
    return tmp_path


def test_runs_that_differ_only_in_seed_form_one_method(seed_sweep):
    runs = load_runs(seed_sweep)
    assert method_name(next(r for r in runs if r.name.endswith("seed=2"))) == "dpo-exact beta=0.1"
    methods = methods_over_seeds(runs)
    assert [(m.name, m.seeds) for m in methods] == [
        ("dpo-exact beta=0.1", ["0", "1", "2"]), ("dpo-exact beta=0.3", ["0", "1"])
    ]


def test_the_report_of_a_seed_sweep_has_its_per_method_table(seed_sweep, capsys):
    assert main([str(seed_sweep)]) == 0
    printed = capsys.readouterr().out
    assert "Over seeds: mean ± half-width of the 95% t-interval" in printed
    rows = {r["method"]: r for r in csv.DictReader((seed_sweep / "results_by_method.csv").open())}
    first = rows["dpo-exact beta=0.1"]
    assert float(first["gold reward mean"]) == pytest.approx(0.3)
    assert float(first["gold reward sd"]) == pytest.approx(0.1)
    assert float(first["gold reward ci95"]) == pytest.approx(0.248414, abs=1e-6)
    assert float(first["exact KL (nats) mean"]) == pytest.approx(0.2)
    assert first["gold reward n"] == "3" and first["seeds"] == "0 1 2"
    second = rows["dpo-exact beta=0.3"]
    assert float(second["gold reward sd"]) == 0.0 and float(second["gold reward ci95"]) == 0.0
    summary = json.loads((seed_sweep / "results_by_method.json").read_text())
    assert summary[0]["figures"]["gold reward"]["n"] == 3
    report = (seed_sweep / "report.md").read_text()
    assert "| dpo-exact beta=0.1 | 0,1,2 | 0.300 ± 0.248 |" in report
    assert (seed_sweep / "frontier.png").stat().st_size > 0
