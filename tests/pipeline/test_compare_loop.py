"""`leash compare`'s loop, without training: which stage runs where, with which overrides."""

from __future__ import annotations

from pathlib import Path

import leash.pipeline.compare as compare
from leash.pipeline.compare import StageResult


def test_seeds_run_every_stage_once_per_seed_in_its_folder(tmp_path, monkeypatch):
    calls = []

    def fake_stage(stage: str, overrides: list[str], run_dir: Path, *live) -> StageResult:
        calls.append((stage, overrides, run_dir))
        return StageResult(stage, run_dir, 0.0, ok=True)

    reported = []
    monkeypatch.setattr(compare, "run_stage", fake_stage)
    monkeypatch.setattr("leash.report.main.main", lambda argv: reported.append(argv) or 0)
    argv = ["seeds=[3,4]", "--out", str(tmp_path), "--stages", "sft,dpo", "--threads", "1",
            "dpo.algo.beta=0.3"]  # options between the overrides, as a user may type them
    assert compare.main(argv) == 0
    assert [(stage, run_dir.relative_to(tmp_path).as_posix()) for stage, _, run_dir in calls] == [
        ("sft", "seed_3/sft"), ("dpo", "seed_3/dpo"), ("sft", "seed_4/sft"), ("dpo", "seed_4/dpo")
    ]
    for stage, overrides, run_dir in calls:
        seed = run_dir.parent.name.removeprefix("seed_")
        assert overrides[-1] == f"seed={seed}" and "threads=1" in overrides
        assert ("algo.beta=0.3" in overrides) == (stage == "dpo")
    assert reported == [[str(tmp_path)]]  # one report over every seed's runs


def test_critic_free_stages_run_only_when_asked_for(tmp_path, monkeypatch):
    calls = []

    def fake_stage(stage: str, overrides: list[str], run_dir: Path, *live) -> StageResult:
        calls.append((stage, overrides))
        return StageResult(stage, run_dir, 0.0, ok=True)

    monkeypatch.setattr(compare, "run_stage", fake_stage)
    monkeypatch.setattr("leash.report.main.main", lambda argv: 0)
    assert not set(compare.OPTIONAL_STAGES) & set(compare.STAGES)  # not in the default run
    argv = ["--out", str(tmp_path), "--stages", "reward,rloo,grpo", "--threads", "1",
            "grpo.algo.kl_coef=0.1"]
    assert compare.main(argv) == 0
    assert [stage for stage, _ in calls] == ["reward", "rloo", "grpo"]
    routed = dict(calls)
    assert "algo.kl_coef=0.1" in routed["grpo"] and "algo.kl_coef=0.1" not in routed["rloo"]
    assert compare.main(["--out", str(tmp_path), "--stages", "vtrace"]) == 2


def test_two_jobs_share_the_cpus_and_start_each_stage_after_its_upstream(tmp_path, monkeypatch):
    calls, ended = [], []

    def fake_stage(stage: str, overrides: list[str], run_dir: Path, *live) -> StageResult:
        upstream = {"reward": "sft", "ppo": "reward", "dpo": "sft"}.get(stage)
        assert upstream is None or upstream in ended  # started after its upstream ended
        calls.append((stage, overrides))
        ended.append(stage)
        return StageResult(stage, run_dir, 0.0, ok=True)

    monkeypatch.setattr(compare, "run_stage", fake_stage)
    monkeypatch.setattr("leash.report.main.main", lambda argv: 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    argv = ["--out", str(tmp_path), "--stages", "sft,reward,ppo,dpo", "--jobs", "2"]
    assert compare.main(argv) == 0
    assert sorted(stage for stage, _ in calls) == ["dpo", "ppo", "reward", "sft"]
    assert all("threads=2" in overrides for _, overrides in calls)  # 4 CPUs over 2 lanes
    assert compare.default_lanes(None, verbose=False, on_cpu=True) == 2
    assert compare.default_lanes(None, verbose=False, on_cpu=False) == 1  # one GPU, shared
    assert compare.default_lanes(3, verbose=True, on_cpu=True) == 1  # one log streams at a time
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert compare.default_lanes(None, verbose=False, on_cpu=True) == 1


def test_two_stages_pushing_to_one_hub_repository_are_refused(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(compare, "run_stage", lambda stage, *rest: calls.append(stage))
    argv = ["--out", str(tmp_path), "--stages", "sft,dpo", "--threads", "1", "hub.push=true",
            "hub.repo_id=me/policy"]
    assert compare.main(argv) == 2 and not calls  # refused before any stage runs
    assert "sft, dpo to one Hub repository, me/policy" in capsys.readouterr().err
    routed = {"sft": ["hub.push=true", "hub.repo_id=me/sft"],
              "dpo": ["hub.push=true", "hub.repo_id=me/dpo"], "reward": ["hub.push=false"]}
    assert compare.stages_pushing_to_one_repo(routed, ("sft", "dpo", "reward")) is None
    routed["reward"] = ["hub.push=True", "hub.repo_id=me/dpo"]
    assert compare.stages_pushing_to_one_repo(routed, ("sft", "dpo", "reward")) == (
        "me/dpo", ["dpo", "reward"])
