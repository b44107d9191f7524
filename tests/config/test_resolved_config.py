"""`leash train --cfg job --resolve` prints the config with every interpolation resolved."""

from __future__ import annotations

import subprocess
import sys


def test_cfg_job_resolve_prints_the_derived_trainer_sizes(isolated_run):
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", "algo=ppo", "--cfg", "job", "--resolve"],
        capture_output=True, text=True, timeout=120, cwd=isolated_run,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "max_steps: 960" in result.stdout  # 60 iterations x 4 epochs x 4 minibatches
    assert "gradient_clip_val: null" in result.stdout  # PPO clips inside its own update
    assert "output_dir: null" in result.stdout  # no run folder: nothing is run
    assert f"cache_dir: {isolated_run / 'cache'}" in result.stdout
