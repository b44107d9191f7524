"""`hydra/launcher=slurm` writes the sbatch script a multi-node run needs, checked without a
cluster: a real `leash train -m ... hydra/launcher=slurm` goes through Hydra, the submitit
plugin and submitit, up to the `sbatch` call, where a stand-in `sbatch` keeps the script and
refuses the job (a stand-in `srun` lets submitit believe it is on a cluster)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

STAND_INS = {
    "sbatch": '#!/bin/sh\ncp "$1" "$SBATCH_COPY"\necho "sbatch: no cluster here" >&2\nexit 1\n',
    "srun": "#!/bin/sh\nexit 0\n",
}


def submitted_script(folder: Path, *overrides: str) -> tuple[str, subprocess.CompletedProcess]:
    """The sbatch script `leash train -m <overrides> hydra/launcher=slurm` submits."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    copy = folder / "submitted.sh"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "SBATCH_COPY": str(copy), "LEASH_OUTPUT_DIR": str(folder / "outputs"),
           "LEASH_CACHE_DIR": str(folder / "cache")}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "leash", "train", "-m", *overrides, "hydra/launcher=slurm"],
        capture_output=True, text=True, timeout=120, cwd=folder, env=env,
    )  # fmt: skip
    assert copy.exists(), result.stderr[-3000:]
    return copy.read_text(), result


def sbatch_options(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, re.M))


def test_a_two_node_sweep_asks_slurm_for_its_nodes_gpus_and_ranks(tmp_path):
    script, result = submitted_script(
        tmp_path, "algo=dpo", "algo.beta=0.1,0.3", "trainer=deepspeed_zero2",
        "trainer.devices=4", "trainer.num_nodes=2", "hydra.launcher.gpus_per_node=4",
        "hydra.launcher.partition=gpu", 'hydra.launcher.setup=["module load cuda"]',
    )  # fmt: skip
    assert result.returncode != 0 and "sbatch: no cluster here" in result.stderr
    options = sbatch_options(script)
    assert options["nodes"] == "2"  # trainer.num_nodes
    assert options["ntasks-per-node"] == options["gpus-per-node"] == "4"  # a rank per GPU
    assert options["partition"] == "gpu" and options["job-name"] == "leash"
    assert options["time"] == "240" and options["cpus-per-task"] == "8"
    assert options["array"] == "0-1%2"  # the sweep's two jobs (parallelism 16, capped at 2)
    assert "\nmodule load cuda\n" in script
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert f"{sys.executable} -u -m submitit.core._submit" in srun
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert not (tmp_path / "cache").exists()  # nothing ran here


def test_the_defaults_are_one_node_one_gpu_one_rank(tmp_path):
    script, _ = submitted_script(tmp_path, "algo=sft", "trainer=gpu")
    options = sbatch_options(script)
    assert (options["nodes"], options["ntasks-per-node"], options["gpus-per-node"]) == (
        "1", "1", "1")  # fmt: skip
    assert "array" not in options  # one job: no array
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


@pytest.mark.parametrize("nodes", [1, 3])
def test_nodes_follow_the_trainer(tmp_path, nodes):
    from hydra import compose, initialize_config_dir

    from leash.config import register_configs
    from leash.resources import conf_dir

    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        cfg = compose("train", overrides=["hydra/launcher=slurm", f"trainer.num_nodes={nodes}",
                                          "hydra.launcher.gpus_per_node=2"],
                      return_hydra_config=True)  # fmt: skip
    assert cfg.hydra.launcher.nodes == nodes and cfg.hydra.launcher.tasks_per_node == 2
