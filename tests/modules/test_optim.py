"""The warmup + decay schedule, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from leash.config import Scheduler
from leash.modules.optim import lr_multiplier


def schedule(step, scheduler=Scheduler.cosine):
    return lr_multiplier(step, warmup_steps=4, max_steps=14, scheduler=scheduler, min_lr_ratio=0.1)


def test_warmup_is_linear_from_the_first_step():
    assert [schedule(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_cosine_decays_to_the_floor():
    assert schedule(4) == pytest.approx(1.0)
    # halfway through the 10 decay steps: 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert schedule(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert schedule(14) == pytest.approx(0.1)
    assert schedule(100) == pytest.approx(0.1)


def test_linear_and_constant():
    assert schedule(9, Scheduler.linear) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule(9, Scheduler.constant) == 1.0
