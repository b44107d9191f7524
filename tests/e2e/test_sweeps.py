"""The sweeps in sweeps/ and the launchers in conf/hydra/launcher/: what they compose to, and
end to end (slow) that a shrunk sweep shares its upstream artifacts, survives a failing job and
reports every job."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import open_dict

from leash.config import register_configs, validate
from leash.pipeline.compose import register_sweeps
from leash.resources import conf_dir, sweeps_dir

GRIDS = {
    "dpo_beta_lr": ("dpo", {"algo.beta": [0.01, 0.03, 0.1, 0.3, 1.0],
                            "algo.lr": [3e-4, 1e-3, 3e-3]}),
    "ppo_kl_lr": ("ppo", {"algo.kl_coef": [0.01, 0.03, 0.1, 0.3],
                          "algo.lr": [1e-4, 3e-4, 1e-3]}),
    "ppo_gt_kl": ("ppo_gt", {"algo.kl_coef": [0.01, 0.03, 0.1, 0.3, 1.0]}),
}
"""Each sweep's algorithm and grid, as its YAML comments document them."""

HYDRA_SWEEPS = sorted(
    p.stem for p in sweeps_dir().glob("*.yaml") if not p.stem.startswith("wandb_")
)
WANDB_SWEEP = sweeps_dir() / "wandb_dpo_beta_lr.yaml"


@pytest.fixture
def hydra_composer(tmp_path):
    """Compose `train` with overrides: with the `hydra` node (sweeper and launcher) by default,
    or, with ``job=True``, the job's config with its paths in tmp_path, ready to validate."""
    register_configs()
    register_sweeps()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):

        def _compose(*overrides: str, job: bool = False):
            if not job:
                return compose("train", overrides=[f"hydra.sweep.dir={tmp_path / 'multirun'}",
                                                   *overrides], return_hydra_config=True)
            cfg = compose("train", overrides=list(overrides))
            with open_dict(cfg):
                cfg.paths.output_dir = str(tmp_path / "run")
                cfg.paths.cache_dir = str(tmp_path / "cache")
            return cfg

        yield _compose
    GlobalHydra.instance().clear()


def sweep_jobs(params: dict[str, str]) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of `hydra.sweeper.params` (overrides of each)."""
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    (batch,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return [list(job) for job in batch]


def leash(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leash", *args],
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------- fast checks
def test_every_sweep_in_the_folder_is_documented_here():
    assert set(HYDRA_SWEEPS) >= set(GRIDS)
    assert WANDB_SWEEP.is_file()


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_sweep_sets_its_algo_and_the_documented_grid(hydra_composer, name):
    algo, grid = GRIDS[name]
    cfg = hydra_composer(f"sweep={name}")
    assert cfg.algo.name == algo
    params = dict(cfg.hydra.sweeper.params)
    assert set(params) == set(grid)
    for key, values in grid.items():
        assert [float(v) for v in params[key].split(",")] == values, key
    jobs = sweep_jobs(params)
    assert len(jobs) == len(list(itertools.product(*grid.values())))
    # Every grid point is a valid config (a value out of range would fail here, not mid-sweep).
    for job in jobs:
        typed = validate(hydra_composer(f"sweep={name}", *job, job=True))
        assert typed.algo.name == algo
    text = (sweeps_dir() / f"{name}.yaml").read_text()
    assert f"leash train -m sweep={name}" in text  # the comments say how to run it


def test_command_line_values_replace_the_sweep_grid(hydra_composer):
    cfg = hydra_composer("sweep=dpo_beta_lr")
    parser = OverridesParser.create()
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    overrides = parser.parse_overrides([*params, "algo.beta=0.1,0.3", "algo.lr=1e-3"])
    (batch,) = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    assert [sorted(job) for job in batch] == [["algo.beta=0.1", "algo.lr=0.001"],
                                              ["algo.beta=0.3", "algo.lr=0.001"]]


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_cfg_job_prints_the_sweeps_algo(isolated_run, name):
    result = leash("train", f"sweep={name}", "--cfg", "job", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = yaml.safe_load(result.stdout)
    assert printed["algo"]["name"] == GRIDS[name][0]
    assert "hydra" not in printed


def test_wandb_sweep_file_runs_leash_train_with_hydra_overrides(hydra_composer):
    spec = yaml.safe_load(WANDB_SWEEP.read_text())
    assert spec["method"] == "grid"
    assert spec["metric"] == {"name": "eval/exact_gold_reward", "goal": "maximize"}
    command = spec["command"]
    assert command[:2] == ["leash", "train"]
    assert "${args_no_hyphens}" in command and "logger=wandb" in command
    # The same grid as the Hydra sweep, as numbers (not strings such as "3e-4").
    grid = GRIDS["dpo_beta_lr"][1]
    assert {key: spec["parameters"][key]["values"] for key in spec["parameters"]} == grid
    for spec_values in spec["parameters"].values():
        assert all(isinstance(v, float) for v in spec_values["values"])

    # Expand the command as `wandb agent` does for one grid point, then compose it.
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    point = {"args": {"algo.beta": {"value": 0.3}, "algo.lr": {"value": 0.003}}}
    macros = create_sweep_command_args(point)
    argv = []
    for part in command:
        argv += macros[part[2:-1]] if part.startswith("${") else [part]
    assert argv[:2] == ["leash", "train"]
    assert "algo.beta=0.3" in argv and "algo.lr=0.003" in argv
    cfg = hydra_composer(*argv[2:], job=True)
    typed = validate(cfg)
    assert (typed.algo.name, typed.algo.beta, typed.algo.lr) == ("dpo", 0.3, 0.003)
    assert list(cfg.logger) == ["wandb"]


def test_wandb_sweep_file_is_not_a_hydra_sweep_option():
    assert "wandb_dpo_beta_lr" not in HYDRA_SWEEPS
    result = leash("train", "sweep=wandb_dpo_beta_lr", "--cfg", "job", timeout=120)
    assert result.returncode != 0


def test_slurm_launcher_composes_and_writes_an_sbatch_script(hydra_composer, tmp_path,
                                                             monkeypatch):
    cfg = hydra_composer("hydra/launcher=slurm", "sweep=dpo_beta_lr",
                         "hydra.launcher.partition=gpu")
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher_cfg.partition == "gpu"
    for key in ("gpus_per_node", "timeout_min", "cpus_per_task", "mem_gb"):
        assert launcher_cfg[key] is not None, key
    launcher = instantiate(launcher_cfg)

    # No cluster here: submitit only needs an `srun` on PATH to build its executor, and the
    # submission is stopped at the point where the sbatch script exists.
    import submitit

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    scripts = []

    class Submitted(Exception):
        pass

    def capture(executor, *_):
        scripts.append(executor._executor._make_submission_file_text("leash-job", "uid"))
        raise Submitted

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    with pytest.raises(Submitted):
        launcher.launch([["algo.beta=0.1"]], initial_job_idx=0)
    (script,) = scripts
    for line in ("--partition=gpu", f"--gpus-per-node={launcher_cfg.gpus_per_node}",
                 f"--time={launcher_cfg.timeout_min}",
                 f"--cpus-per-task={launcher_cfg.cpus_per_task}",
                 f"--mem={launcher_cfg.mem_gb}GB"):
        assert f"#SBATCH {line}\n" in script, line


def test_local_parallel_launcher_runs_two_jobs_at_a_time(hydra_composer):
    cfg = hydra_composer("hydra/launcher=local_parallel", "sweep=dpo_beta_lr")
    assert cfg.hydra.launcher._target_.endswith("joblib_launcher.JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == 2
    launcher = instantiate(cfg.hydra.launcher)
    assert launcher.joblib["n_jobs"] == 2


@pytest.mark.parametrize(("option", "target"), [("slurm", "SlurmLauncher"),
                                                ("local_parallel", "JoblibLauncher")])
def test_launcher_options_from_the_command_line(isolated_run, option, target):
    result = leash("train", f"hydra/launcher={option}", "--cfg", "hydra", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert target in result.stdout


# ---------------------------------------------------------------------------- end to end runs
def multirun(*overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """`leash train -m ... debug=fast` into a fresh LEASH_OUTPUT_DIR; the run and its folder.

    The jobs skip the common evaluator (its exact frontier takes most of a tiny job's time):
    what is tested here is the sweep, the shared cache and the report, not the metrics.
    """
    result = leash("train", "-m", *overrides, "debug=fast", "eval.enabled=false")
    (folder,) = (Path(os.environ["LEASH_OUTPUT_DIR"]) / "multirun").iterdir()
    return result, folder


def report(folder: Path) -> list[dict]:
    result = leash("report", str(folder), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((folder / "results.json").read_text())["runs"]


def artifacts(cache: Path, kind: str) -> list[Path]:
    """Complete artifacts of one kind (not locks, not half-written temporary folders)."""
    return [p for p in (cache / kind).iterdir() if p.is_dir() and not p.name.startswith(".")]


def assert_built_once(output: str, cache: Path) -> None:
    assert output.count("stage sft: not cached") == 1
    assert len(artifacts(cache, "sft")) == 1
    assert len(artifacts(cache, "pairs")) == 1
    assert len([p for p in (cache / "runs").iterdir() if p.name.startswith("sft-")]) == 1


@pytest.mark.slow
def test_dpo_sweep_shares_one_sft_policy_and_reports_every_job(isolated_run):
    result, folder = multirun("sweep=dpo_beta_lr", "algo.beta=0.1,0.3", "algo.lr=1e-3")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    jobs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job, beta in zip(jobs, (0.1, 0.3), strict=True):
        assert (job / "metrics.json").is_file()
        assert f"algo.beta={beta}" in (job / ".hydra" / "overrides.yaml").read_text()
    assert_built_once(output, isolated_run / "cache")

    runs = report(folder)
    assert [run["status"] for run in runs] == ["finished", "finished"]
    assert {run["algo"] for run in runs} == {"dpo"}
    assert [run["config"]["algo"]["beta"] for run in runs] == [0.1, 0.3]


@pytest.mark.slow
def test_a_failing_job_does_not_stop_the_sweep_and_is_reported(isolated_run):
    # The first job starts from an SFT policy that does not exist: it raises at run time, Hydra
    # records the failure and launches the next job, then exits non-zero once all have run.
    missing = isolated_run / "no-such-policy"
    result, folder = multirun("sweep=dpo_beta_lr", "algo.beta=0.1", "algo.lr=1e-3",
                              f"upstream.sft_policy={missing},null")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error executing job with overrides" in output
    failed, finished = folder / "0", folder / "1"
    assert not (failed / "metrics.json").exists()
    assert (finished / "metrics.json").is_file(), output[-4000:]

    runs = report(folder)
    assert [run["status"] for run in runs] == ["failed", "finished"]
    assert any(str(missing) in override for override in runs[0]["overrides"])


def test_an_invalid_value_fails_only_its_own_job(isolated_run):
    result, folder = multirun("algo=dpo", "algo.beta=-1,-2")
    assert result.returncode != 0
    assert "algo.beta" in result.stdout + result.stderr
    jobs = sorted(p.name for p in folder.iterdir() if (p / ".hydra" / "config.yaml").is_file())
    assert jobs == ["0", "1"]


@pytest.mark.slow
def test_parallel_jobs_wait_for_one_sft_build(isolated_run):
    result, folder = multirun("sweep=dpo_beta_lr", "algo.beta=0.1,0.3", "algo.lr=1e-3",
                              "hydra/launcher=local_parallel")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Joblib.Parallel(n_jobs=2" in output
    for job in ("0", "1"):
        assert (folder / job / "metrics.json").is_file()
    assert_built_once(output, isolated_run / "cache")
    assert [run["status"] for run in report(folder)] == ["finished", "finished"]
