"""An installed wheel finds its config tree and sweeps without the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_runs_leash_train_cfg_job_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=REPO, check=True, capture_output=True, timeout=300,
    )
    (wheel,) = dist.glob("leash-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "leash/_conf/train.yaml" in names
    assert "leash/_sweeps/sft_lr.yaml" in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", "import leash.cli, sys; print(leash.cli.__file__); "
         "sys.argv = ['leash', 'train', 'sweep=sft_lr', '--cfg', 'job']; leash.cli.main()"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(target))
    assert "name: sft" in result.stdout
    assert "source: task" in result.stdout
