"""ResourceMetrics' throughput is the steady state, step end to step end: data loading counts,
validation does not, the warm-up steps are left out; it agrees with an outside step clock."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest
import torch
from torch.utils.data import DataLoader

from helpers import quiet_trainer, tiny_model
from leash.callbacks.resources import WARMUP_STEPS, ResourceMetrics, peak_rss_bytes
from leash.config import Scheduler, SFTConfig
from leash.data.types import SFTBatch
from leash.modules.sft import SFTModule
from leash.sequences import IGNORE_INDEX

VOCAB = 12


class Clock:
    """A perf_counter the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def batch(rows: int = 4, real: int = 3, width: int = 5) -> SFTBatch:
    """``rows`` sequences with ``real`` real tokens each (the rest padding)."""
    ids = torch.ones(rows, width, dtype=torch.long)
    mask = torch.zeros(rows, width, dtype=torch.long)
    mask[:, :real] = 1
    return SFTBatch(ids, mask, torch.full((rows, width), IGNORE_INDEX))


def fake_run(clock: Clock, ends: list[float], validations=(), warmup: int = 2):
    """Drive the hooks: training starts at 0, steps end at ``ends``; ``validations`` are
    (start, end) pairs run after the step that ended at ``start``."""
    callback = ResourceMetrics("unused", warmup_steps=warmup)
    module = SimpleNamespace(device=torch.device("cpu"), roles={}, step_tokens=None)
    trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"), optimizers=[])
    callback.on_train_start(trainer, module)
    pauses = dict(validations)
    for end in ends:
        clock.now = end
        callback.on_train_batch_end(trainer, module, None, batch(), 0)
        if end in pauses:
            clock.now = pauses[end]
            callback.on_validation_end(trainer, module)
    return callback.report(trainer, module)


def test_steady_state_by_hand(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    # Steps of 1.0 (the first, from the start of training), 0.5, 0.5; validation 2 -> 10;
    # then 0.5 and 0.5 measured from the end of validation.
    report = fake_run(clock, [1.0, 1.5, 2.0, 10.5, 11.0], validations=[(2.0, 10.0)])
    assert report.steps == 5 and report.warmup_steps == 2
    assert report.train_time_s == pytest.approx(3.0)  # validation left out
    assert report.mean_step_time_s == pytest.approx(0.5)  # steps 3 to 5
    assert report.samples_per_s == pytest.approx(12 / 1.5)  # 3 steps x 4 rows in 1.5 s
    assert report.tokens_per_s == pytest.approx(36 / 1.5)  # 4 rows x 3 real tokens a step
    assert report.tokens == 60 and report.samples == 20


def test_a_run_no_longer_than_the_warm_up_is_timed_whole(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    report = fake_run(clock, [1.0, 1.5], warmup=3)
    assert report.steps == 2 and report.warmup_steps == 0
    assert report.samples_per_s == pytest.approx(8 / 1.5)
    assert WARMUP_STEPS == 3


class SlowCollate:
    """Stands for data loading: every batch takes ``seconds`` to build."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, rows: list[SFTBatch]) -> SFTBatch:
        time.sleep(self.seconds)
        return rows[0]


class Ticks(lightning.Callback):
    """The outside clock the benchmarks use: a timestamp at every step end."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.ends.append(time.perf_counter())


def test_data_loading_counts_and_the_rate_agrees_with_an_outside_clock(tmp_path):
    algo = SFTConfig(lr=1e-2, scheduler=Scheduler.constant, warmup_steps=0, max_steps=8)
    ticks, resources = Ticks(), ResourceMetrics(str(tmp_path), warmup_steps=3)
    data = DataLoader([batch()] * 8, batch_size=1, collate_fn=SlowCollate(0.03))
    trainer = quiet_trainer(max_steps=8, callbacks=[ticks, resources])
    trainer.fit(SFTModule(tiny_model(VOCAB).train(), algo), data)
    figures = json.loads((tmp_path / "metrics.json").read_text())["resources"]
    assert figures["steps"] == 8 and figures["warmup_steps"] == 3
    assert figures["mean_step_time_s"] >= 0.03  # the loading of each batch is in its step
    outside = 4 * 5 / (ticks.ends[-1] - ticks.ends[2])  # rows x timed steps / their seconds
    assert figures["samples_per_s"] == pytest.approx(outside, rel=0.02)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's clear_refs")
def test_each_job_of_a_one_process_sweep_measures_its_own_peak(tmp_path):
    # A job that touched 256 MiB and freed them must not raise the next job's peak: Hydra's
    # basic launcher runs a sweep's jobs in one process, one ResourceMetrics each.
    def touch(mib: int) -> None:
        block = torch.ones(mib * 2**20 // 4)
        del block

    ResourceMetrics(str(tmp_path / "first"))
    before = peak_rss_bytes()
    touch(256)
    assert peak_rss_bytes() > before + 200 * 2**20  # the first job's peak holds the block
    second = ResourceMetrics(str(tmp_path / "second"))
    assert second._rss_kind == "cpu_peak_rss"
    assert peak_rss_bytes() < before + 100 * 2**20  # the second's starts from what is held now
