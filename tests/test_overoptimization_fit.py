"""experiments/overoptimization.py's fits of Gao et al.'s functional forms, by hand (no
training)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _script():
    """The study script, imported the way write_summaries.py imports every study."""
    spec = importlib.util.spec_from_file_location("write_summaries",
                                                  EXPERIMENTS / "write_summaries.py")  # fmt: skip
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    return writer.load_script("overoptimization")


study = _script()


def test_best_of_n_form_through_two_points_by_hand():
    # d(α − βd) through (1, 1) and (2, 0): α − β = 1 and 2α − 4β = 0, so α = 2, β = 1.
    alpha, beta, rmse = study.fit("bon", np.array([1.0, 2.0]), np.array([1.0, 0.0]))
    assert (alpha, beta, rmse) == pytest.approx((2.0, 1.0, 0.0), abs=1e-12)


def test_rl_form_through_two_points_by_hand():
    # d(α − β ln d) through (1, 1) and (e, 0): α = 1 and e(α − β) = 0, so β = 1.
    alpha, beta, rmse = study.fit("rl", np.array([1.0, math.e]), np.array([1.0, 0.0]))
    assert (alpha, beta, rmse) == pytest.approx((1.0, 1.0, 0.0), abs=1e-12)


def test_least_squares_splits_a_disagreement_by_hand():
    # Two points at d = 1 disagree (0 and 2): the least-squares curve passes through their mean
    # 1 and exactly through (2, 0), so α = 2, β = 1, residuals (-1, +1, 0): rmse sqrt(2/3).
    alpha, beta, rmse = study.fit("bon", np.array([1.0, 1.0, 2.0]), np.array([0.0, 2.0, 0.0]))
    assert (alpha, beta) == pytest.approx((2.0, 1.0), abs=1e-12)
    assert rmse == pytest.approx(math.sqrt(2 / 3))


def test_fits_recover_their_own_curves_and_the_rl_form_needs_positive_d():
    d = np.linspace(0.1, 3.0, 25)
    for form, (alpha, beta) in {"bon": (0.8, 0.25), "rl": (0.6, 0.4)}.items():
        fitted = study.fit(form, d, study.curve(form, alpha, beta, d))
        assert fitted == pytest.approx((alpha, beta, 0.0), abs=1e-9)
    assert study.curve("rl", 0.6, 0.4, np.array([1.0])) == pytest.approx([0.6])  # ln 1 = 0
    with pytest.raises(ValueError, match="d > 0"):
        study.fit("rl", np.array([0.0, 1.0]), np.array([0.0, 1.0]))


def test_turning_points_by_hand():
    # d(2 − d) peaks where 2 − 2d = 0: d = 1 = α/(2β). d(1 − ln d) peaks where 1 − ln d − 1 = 0:
    # d = 1 = exp(α/β − 1). With β <= 0 neither form turns over.
    assert study.turning_point("bon", 2.0, 1.0) == pytest.approx(1.0)
    assert study.turning_point("rl", 1.0, 1.0) == pytest.approx(1.0)
    assert study.turning_point("rl", 3.0, 1.0) == pytest.approx(math.e**2)
    assert study.turning_point("bon", 1.0, 0.0) == math.inf
    assert study.turning_point("rl", 1.0, -0.5) == math.inf
