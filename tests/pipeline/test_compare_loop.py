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
    argv = ["--out", str(tmp_path), "--stages", "sft,dpo", "--threads", "1", "seeds=[3,4]",
            "dpo.algo.beta=0.3"]
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
