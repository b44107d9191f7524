"""experiments/coverage.py's pure parts, with numbers worked out by hand: which responses a pair
set holds, the mass and reward off them, a cell over seeds, and the verdict its summary draws."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from leash.config import TaskConfig
from leash.data.tasks import SyntheticTask
from leash.evaluation.oracle import ResponseSpace

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _script():
    sys.path.insert(0, str(EXPERIMENTS))  # the script imports run_pool
    spec = importlib.util.spec_from_file_location("coverage_study", EXPERIMENTS / "coverage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["coverage_study"] = module
    spec.loader.exec_module(module)
    return module


coverage = _script()
TINY = TaskConfig(num_topics=2, num_prompt_words=2, prompt_length=2, num_prompts=4,
                  response_vocab_size=2, max_response_length=2, target_length=1)  # fmt: skip


def test_every_response_of_the_space_is_keyed_as_the_pairs_write_it():
    task = SyntheticTask.from_config(TINY)
    keys = coverage.response_keys(task, ResponseSpace.build(2, 2))
    # order: "" (EOS alone), w0, w1 ended; then the cut two-word responses
    assert keys == {("", True): 0, ("w0", True): 1, ("w1", True): 2, ("w0 w0", False): 3,
                    ("w0 w1", False): 4, ("w1 w0", False): 5, ("w1 w1", False): 6}  # fmt: skip


def test_a_prompts_support_is_the_responses_of_its_own_pairs():
    keys = {("", True): 0, ("a", True): 1, ("b", True): 2, ("a b", False): 3}
    rows = [
        {"prompt": "p", "chosen": "a", "chosen_ended": True, "rejected": "",
         "rejected_ended": True},
        {"prompt": "q", "chosen": "a b", "chosen_ended": False, "rejected": "a",
         "rejected_ended": True},
        {"prompt": "p", "chosen": "a", "chosen_ended": True, "rejected": "b",
         "rejected_ended": True},
    ]  # fmt: skip
    inside = coverage.pair_support(keys, ["p", "q", "r"], rows)
    assert inside.tolist() == [[True, True, True, False], [False, True, False, True],
                               [False, False, False, False]]  # fmt: skip


def test_mass_and_reward_outside_worked_out_by_hand():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
    rewards = torch.tensor([[1.0, 2.0, -1.0], [0.0, 4.0, 1.0]], dtype=torch.float64)
    inside = torch.tensor([[True, False, False], [False, True, True]])
    # outside: prompt 0 holds 0.3 + 0.2 = 0.5, prompt 1 holds 0.1
    assert coverage.mass_outside(probs, inside).tolist() == pytest.approx([0.5, 0.1])
    # pooled: (0.3·2 + 0.2·(-1) + 0.1·0) / (0.5 + 0.1) = 0.4 / 0.6
    assert coverage.reward_outside(probs, rewards, inside) == pytest.approx(2 / 3)
    # one (N,) support for every prompt: outside {0}: 0.5 and 0.9
    shared = torch.tensor([True, False, False])
    assert coverage.mass_outside(probs, shared).tolist() == pytest.approx([0.5, 0.9])


def test_a_cell_is_the_mean_and_t_interval_of_its_finished_seeds():
    runs = [{"gold reward": 1.0}, None, {"gold reward": 3.0}, {"gold reward": 2.0}]
    row = coverage.cell_row("dpo β=0.1 c=1", "dpo", "0.1", "1", runs)
    assert row["finished"] == "3/4"
    # mean 2, sd 1, t(0.975, 2) = 4.3027: 4.3027 / sqrt(3) = 2.4841
    assert (row["gold reward mean"], row["gold reward ci95"]) == ("2.0000", "2.4841")
    assert row["exact KL mean"] == "" and row["exact KL ci95"] == ""
    alone = coverage.cell_row("sft c=1", "sft", "", "1", [{"gold reward": 0.5}])
    assert (alone["gold reward mean"], alone["gold reward ci95"]) == ("0.5000", "")


def results(folder: Path, dpo_mass: float) -> Path:
    """A results folder in which every DPO cell has ``dpo_mass`` outside its pairs, PPO 0.4
    and the reference 0.5 (each 0.1 less outside S); rewards of that mass: DPO 0.1, PPO 0.3,
    reference 0.2."""
    figures = {"dpo": (dpo_mass, 0.1), "ppo": (0.4, 0.3), "sft": (0.5, 0.2)}
    rows = []
    for c in coverage.COVERAGES:
        cells = [("sft", None)] + [(m, s) for m in coverage.METHODS
                                   for s in coverage.METHODS[m][2]]  # fmt: skip
        for method, strength in cells:
            mass, reward = figures[method]
            run = {column: 0.25 for column in coverage.COLUMNS}
            run.update({"outside its pairs": mass, "outside S": mass - 0.1,
                        "reward outside its pairs": reward})
            rows.append(coverage.cell_row(coverage.cell_name(method, strength, c), method,
                                          strength or "", c, [run]))  # fmt: skip
    coverage.write_csv(folder / "coverage_cells.csv", rows)
    coverage.write_csv(folder / "coverage_data.csv", [
        {"coverage": c, "train pairs": "768", "responses in the pairs": "100",
         "responses per prompt in its pairs": "20.00", "responses in the space": "4681"}
        for c in coverage.COVERAGES])  # fmt: skip
    coverage.write_csv(folder / "coverage_time.csv", [
        {"runs": "37", "jobs": "2", "training span (s)": "600", "measurement (s)": "30",
         "cores": "2", "load average (15 min, at the end)": "1.5"}])
    return folder


def test_the_summary_verdict_follows_the_committed_masses(tmp_path):
    (tmp_path / "more").mkdir()
    (tmp_path / "less").mkdir()
    more = coverage.summary(results(tmp_path / "more", dpo_mass=0.6))
    less = coverage.summary(results(tmp_path / "less", dpo_mass=0.3))
    assert "responses the data never shows holds here" in more
    assert "mass outside its pairs is above PPO's in 6 and below in 0 of 6" in more
    assert "mass outside S (c < 1) above PPO's in 4 and below in 0 of 4" in more
    assert ("DPO's is above the reference's in 4 and below in 0 of 4 cells, PPO's above the "
            "reference's in 0 and below in 4 of 4") in more  # fmt: skip
    assert "does not hold here" in less and "above PPO's in 0 and below in 6 of 6" in less
    # rewards of the mass outside its pairs: DPO 0.1 < reference 0.2 < PPO 0.3
    assert "pairs is above PPO's in 0 and below in 6 of 6 comparisons" in more
    assert ("DPO's is above the reference's in 0 and below in 6 of 6, PPO's above the "
            "reference's in 6 and below in 0 of 6") in more  # fmt: skip
    assert "The 37 runs took 600 s" in more and "load average 1.5 at the end" in more


def test_cells_differ_only_when_their_intervals_are_apart():
    def cell(mean: str, half: str) -> dict[str, str]:
        return {"outside S mean": mean, "outside S ci95": half}

    # 0.5 - 0.1 = 0.4 > 0.35 + 0.01 = 0.36: above; 0.5 - 0.2 = 0.3 < 0.36: overlapping
    assert coverage._sign(cell("0.5", "0.1"), cell("0.35", "0.01"), "outside S") == 1
    assert coverage._sign(cell("0.5", "0.2"), cell("0.35", "0.01"), "outside S") == 0
    assert coverage._sign(cell("0.35", "0.01"), cell("0.5", "0.1"), "outside S") == -1
    # the reference has no interval (one value): its mean alone
    assert coverage._sign(cell("0.5", "0.1"), cell("0.39", ""), "outside S") == 1


def test_a_study_fails_when_a_run_did_not_finish(tmp_path, capsys):
    from run_pool import check_runs

    from leash.report.runs import FINISHED, RunRecord

    def record(name: str, status: str) -> RunRecord:  # no frontier: only the status counts
        return RunRecord(tmp_path / name, name, "dpo", status, {})

    assert check_runs([record("a", FINISHED), record("b", FINISHED)]) == 0
    assert check_runs([record("a", FINISHED), record("b", "failed")]) == 1
    assert f"runs without metrics.json: ['{tmp_path / 'b'}']" in capsys.readouterr().err
