"""W&B: mode selection, flat config, run naming, media, and a run finished even when a job fails.

Runs are offline; each test reads its run back from the transaction log wandb writes
(``wandb/offline-run-*/run-*.wandb``: a LevelDB-style log of ``wandb_internal_pb2.Record``s),
which is what ``wandb sync`` would upload.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2

from leash.callbacks.evaluation import EvaluationFiles
from leash.callbacks.wandb_media import SAMPLE_COLUMNS, WandbEvalMedia
from leash.config import register_configs
from leash.evaluation.evaluator import Evaluation, SampleRow
from leash.evaluation.oracle import Frontier
from leash.logging_wandb import (
    LeashWandbLogger,
    exit_code,
    finishing_wandb,
    flat_config,
    run_naming,
    select_mode,
    wandb_logger,
)
from leash.pipeline.compose import register_sweeps
from leash.resources import conf_dir


# ---------------------------------------------------------------------- reading offline runs
@dataclass
class OfflineRun:
    """What one offline run recorded."""

    folder: Path
    name: str = ""
    group: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    exit_code: int | None = None

    def values(self, key: str) -> list:
        return [row[key] for row in self.history if key in row]


def _payloads(path: Path):
    """Records of a .wandb file: a 7-byte header, then 32 KiB blocks of chunks, each with a
    7-byte header (crc32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last)."""
    data, block, pos, pending = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            yield pending


def read_run(save_dir: Path, timeout: float = 20.0) -> OfflineRun:
    """The single offline run under ``save_dir/wandb``, once its exit record is on disk.

    ``wandb.finish`` returns before wandb-core's writer has flushed the run's file (seen under
    load: a finished run's file read back empty), so the file is read again until it holds the
    exit record, for at most ``timeout`` seconds; the last reading is returned either way.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = _read_run_once(save_dir)
        if run.exit_code is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def _read_run_once(save_dir: Path) -> OfflineRun:
    (folder,) = (save_dir / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    run = OfflineRun(folder)
    for payload in _payloads(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.name, run.group = record.run.display_name, record.run.run_group
            run.config.update({u.key: json.loads(u.value_json) for u in record.run.config.update})
        elif kind == "config":
            run.config.update({u.key: json.loads(u.value_json) for u in record.config.update})
        elif kind == "history":
            run.history.append({
                "/".join(item.nested_key) or item.key: json.loads(item.value_json)
                for item in record.history.item
            })
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


# --------------------------------------------------------------------------------- mode
@pytest.mark.parametrize(
    ("environ", "netrc", "expected"),
    [
        ({"WANDB_MODE": "disabled", "WANDB_API_KEY": "k" * 40}, None, "disabled"),
        ({"WANDB_MODE": "online"}, None, "online"),
        ({"WANDB_DISABLED": "true"}, None, "disabled"),
        ({"WANDB_API_KEY": "k" * 40}, None, "online"),
        ({}, "machine api.wandb.ai login user password " + "k" * 40, "online"),
        ({}, "machine example.org login user password secret", "offline"),
        ({"WANDB_BASE_URL": "https://wandb.example.org"},
         "machine wandb.example.org login user password " + "k" * 40, "online"),
        ({"WANDB_BASE_URL": "https://wandb.example.org"},
         "machine api.wandb.ai login user password " + "k" * 40, "offline"),
        ({}, None, "offline"),
    ],
)
def test_mode_is_offline_unless_credentials_are_found(tmp_path, environ, netrc, expected):
    environ = {"HOME": str(tmp_path), **environ}  # no real ~/.netrc leaks in
    if netrc is not None:
        (tmp_path / ".netrc").write_text(netrc + "\n")
    assert select_mode(environ) == expected


# ----------------------------------------------------------------------- config and names
def test_config_file_is_resolved_and_flattened(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("algo:\n  beta: 0.1\n  adam_betas: [0.9, 0.99]\n"
                    "run_name: dpo-${algo.beta}\ndata:\n  task: {seed: 3}\nempty: {}\n")
    assert flat_config(path) == {
        "algo.beta": 0.1, "algo.adam_betas": [0.9, 0.99], "run_name": "dpo-0.1",
        "data.task.seed": 3, "empty": {},
    }


def test_unresolvable_config_is_logged_as_written(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("paths:\n  output_dir: ${hydra:runtime.output_dir}\n")
    assert flat_config(path) == {"paths.output_dir": "${hydra:runtime.output_dir}"}


def _hydra_cfg(mode: RunMode, **choices):
    return OmegaConf.create({
        "mode": mode, "job": {"num": 3}, "sweep": {"dir": "out/multirun/2025-01-02_03-04-05"},
        "runtime": {"choices": {"sweep": None, "experiment": None, **choices}},
    })


def test_run_names_and_groups():
    assert run_naming("dpo-exact", None, None) == ("dpo-exact", None)
    assert run_naming("dpo-exact", None, _hydra_cfg(RunMode.RUN)) == ("dpo-exact", None)
    single = _hydra_cfg(RunMode.RUN, experiment="tiny_llama_exact")
    assert run_naming("dpo-exact", None, single) == ("dpo-exact", "tiny_llama_exact")
    sweep = _hydra_cfg(RunMode.MULTIRUN, sweep="sft_lr")
    assert run_naming("sft-exact", None, sweep) == ("sft-exact-3", "sft_lr/2025-01-02_03-04-05")
    plain = _hydra_cfg(RunMode.MULTIRUN)
    assert run_naming("a", None, plain) == ("a-3", "multirun/2025-01-02_03-04-05")
    assert run_naming("a", "beta-grid", plain) == ("a-3", "beta-grid")


@pytest.mark.parametrize("logger", ["[wandb,csv]", "wandb_csv"])
def test_wandb_and_csv_compose_together(tmp_path, logger):
    register_configs()
    register_sweeps()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        cfg = compose("train", overrides=[f"logger={logger}", f"paths.output_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    assert list(cfg.logger) == ["wandb", "csv"]
    import hydra

    built = hydra.utils.instantiate(cfg.logger.wandb)  # lazily: no run starts here
    assert isinstance(built, LeashWandbLogger)
    assert built._wandb_init["project"] == "leash"
    assert built._wandb_init["dir"] == str(tmp_path)
    assert built._wandb_init["name"] == "sft-exact"


# ------------------------------------------------------------------------- runs with Lightning
class TinyModule(lightning.LightningModule):
    """Logs leash-style metrics; raises at ``fail_at_step`` when set."""

    def __init__(self, fail_at_step: int | None = None):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.fail_at_step = fail_at_step

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at_step:
            raise RuntimeError("boom")
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def _loader(self):
        data = torch.utils.data.TensorDataset(torch.randn(8, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)

    train_dataloader = val_dataloader = _loader


class EvaluatedTinyModule(TinyModule):
    """Stands in for an evaluated module: after each validation, a new ``last_evaluation`` with
    3 samples, ``eval/exact_*`` metrics and a frontier, as :mod:`leash.modules.evaluated` sets."""

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        step = self.global_step
        metrics = {"eval/exact_kl": 0.1 * step, "eval/exact_gold_reward": 0.2 + step}
        self.log_dict(metrics)
        samples = [SampleRow(f"p{i}", f"r{i}", 0.5 * i, None, None, i + 1, -0.1 * i)
                   for i in range(3)]
        curve = Frontier(np.array([np.inf, 1.0, 0.1]), np.array([0.0, 0.5, 2.0]),
                         np.array([0.1, 0.6, 0.9]))
        self.last_evaluation = Evaluation(metrics, samples, curve)


def fit(tmp_path: Path, module: EvaluatedTinyModule, logger=None) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("algo:\n  name: dpo\n  beta: 0.1\nrun_name: unit\n")
    if logger is None:
        logger = wandb_logger("unit", str(tmp_path), mode="offline", config_file=str(config))
    trainer = lightning.Trainer(
        max_steps=4, val_check_interval=2, limit_val_batches=1, log_every_n_steps=1,
        logger=logger, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=1,
        callbacks=[EvaluationFiles(str(tmp_path)), WandbEvalMedia()],
    )
    trainer.fit(module)


@pytest.fixture(autouse=True)
def _private_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def test_metrics_config_samples_and_frontier_reach_wandb(tmp_path):
    with finishing_wandb():
        fit(tmp_path, EvaluatedTinyModule())
    import wandb

    assert wandb.run is None
    run = read_run(tmp_path)
    assert run.exit_code == 0
    assert run.name == "unit"
    assert run.config["algo.beta"] == 0.1 and run.config["algo.name"] == "dpo"
    assert len(run.values("train/loss")) == 4
    assert run.values("eval/exact_kl") == pytest.approx([0.2, 0.4])
    # One table and one figure per evaluation (steps 2 and 4), none for the sanity check.
    tables = run.values("eval/samples/path")
    assert len(tables) == 2 and len(run.values("eval/frontier/path")) == 2
    table = json.loads((run.folder / "files" / tables[-1]).read_text())
    assert table["columns"] == SAMPLE_COLUMNS
    assert table["data"] == [
        [f"p{i}", f"r{i}", 0.5 * i, None, None, i + 1, pytest.approx(-0.1 * i), 4]
        for i in range(3)
    ]
    image = run.folder / "files" / run.values("eval/frontier/path")[-1]
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_media_callback_is_harmless_without_wandb(tmp_path):
    with finishing_wandb():
        fit(tmp_path, EvaluatedTinyModule(), logger=CSVLogger(str(tmp_path)))
    assert not (tmp_path / "wandb").exists()
    assert (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").exists()


def test_a_failing_job_leaves_a_finished_run_with_its_exit_code(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), finishing_wandb():
        fit(tmp_path, EvaluatedTinyModule(fail_at_step=3))
    import wandb

    assert wandb.run is None
    run = read_run(tmp_path)
    assert run.exit_code == 1
    assert len(run.values("train/loss")) == 3


def test_exit_codes():
    assert exit_code(RuntimeError()) == 1
    assert exit_code(SystemExit(2)) == 2
    assert exit_code(SystemExit()) == 0
    assert exit_code(SystemExit("message")) == 1


def test_an_online_run_that_cannot_start_goes_on_offline(tmp_path, monkeypatch):
    import wandb

    real_init = wandb.init

    def init(**kwargs):
        if kwargs.get("mode") == "online":
            raise wandb.errors.CommError("no network")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    logger = wandb_logger("fallback", str(tmp_path), mode="online")
    with finishing_wandb():
        logger.experiment.log({"train/loss": 1.0})
    run = read_run(tmp_path)
    assert run.name == "fallback" and run.exit_code == 0
    assert run.values("train/loss") == [1.0]


# ---------------------------------------------------------------------------- end to end
def leash_train(*args: str) -> None:
    """`leash train ARGS` in a child process with its own wandb service: an inherited
    ``WANDB_SERVICE`` (set by this process's runs) would attach it to ours."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    result = subprocess.run([sys.executable, "-m", "leash", "train", *args],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_leash_train_with_wandb_logger(isolated_run):
    run_dir = isolated_run / "run"
    leash_train("algo=sft", "debug=fast", "logger=[wandb,csv]", f"hydra.run.dir={run_dir}",
                "++callbacks.wandb_media._target_=leash.callbacks.wandb_media.WandbEvalMedia")
    run = read_run(run_dir)
    assert run.exit_code == 0
    assert run.name == "sft-exact"
    assert run.config["algo.name"] == "sft" and run.config["data.task.seed"] == 0
    assert not any("${" in str(value) for value in run.config.values())  # resolved in the job
    assert run.values("train/loss") and run.values("val/loss")
    for key in ("eval/exact_kl", "eval/exact_gold_reward", "resources/peak_memory_bytes"):
        assert run.values(key), key
    assert run.values("eval/samples/path") and run.values("eval/frontier/path")
    assert (run_dir / "logs" / "metrics.csv").exists()  # the CSV logger ran alongside


@pytest.mark.slow
def test_a_multirun_gives_one_finished_run_per_job_in_one_group(isolated_run):
    """Needs `cli.train_job` wrapped in `finishing_wandb()`: without it the second job's logger
    would reuse the first job's still-open run."""
    sweep_dir = isolated_run / "sweep"
    leash_train("-m", "algo=sft", "debug=fast", "logger=wandb", "algo.lr=1e-3,2e-3",
                f"hydra.sweep.dir={sweep_dir}")
    runs = [read_run(sweep_dir / str(job)) for job in (0, 1)]
    assert [run.name for run in runs] == ["sft-exact-0", "sft-exact-1"]
    assert {run.group for run in runs} == {"multirun/sweep"}
    assert [run.config["algo.lr"] for run in runs] == [1e-3, 2e-3]
    assert [run.exit_code for run in runs] == [0, 0]


@pytest.mark.slow
def test_compare_logs_one_summary_run_with_the_comparison_table(isolated_run):
    out = isolated_run / "compare"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    result = subprocess.run(
        [sys.executable, "-m", "leash", "compare", "--stages", "sft", "--out", str(out),
         "debug=fast", "logger=wandb"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = read_run(out)
    assert summary.name == "compare-summary"
    assert summary.group == f"compare/{out.name}"
    assert summary.exit_code == 0
    assert summary.values("comparison/path") and summary.values("frontier/path")
    assert read_run(out / "sft").exit_code == 0  # the stage's own run, finished
