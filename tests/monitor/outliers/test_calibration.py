"""Thresholds set on the reference give the target false-positive rate on new data from the
same distribution, within a binomial margin."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from monitor.outliers.detectors import Method, fit
from tests.monitor.outliers.data import gaussian, skewed

REFERENCE_ROWS = 3000
HELD_OUT_ROWS = 30_000
FEATURES = 8


def margin(fpr: float, reference_rows: int) -> float:
    """Four standard deviations of the observed rate: the threshold is itself a quantile
    estimated from the reference (variance fpr(1 - fpr)/n_ref), and the held-out rate a
    binomial proportion (fpr(1 - fpr)/n_held_out)."""
    return 4 * math.sqrt(fpr * (1 - fpr) * (1 / reference_rows + 1 / HELD_OUT_ROWS))


def observed_rate(
    make: Callable[[int, int, int], pd.DataFrame], method: Method, fpr: float, rows: int
) -> float:
    detector = fit(make(rows, FEATURES, 1), method, fpr=fpr, seed=3)
    held_out = detector.score(make(HELD_OUT_ROWS, FEATURES, 2))
    return float(held_out.is_outlier.mean())


@pytest.mark.parametrize("make", [gaussian, skewed], ids=["gaussian", "skewed"])
@pytest.mark.parametrize("method", ["robust_z", "mahalanobis"])
@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_the_threshold_gives_the_target_false_positive_rate(
    make: Callable[[int, int, int], pd.DataFrame], method: Method, fpr: float
) -> None:
    rate = observed_rate(make, method, fpr, REFERENCE_ROWS)
    assert abs(rate - fpr) <= margin(fpr, REFERENCE_ROWS), rate


@pytest.mark.parametrize(
    ("make", "fpr"), [(gaussian, 0.05), (skewed, 0.01)], ids=["gaussian", "skewed"]
)
def test_the_isolation_forest_threshold_gives_the_target_rate(
    make: Callable[[int, int, int], pd.DataFrame], fpr: float
) -> None:
    rows = 1500
    rate = observed_rate(make, "isolation_forest", fpr, rows)
    assert abs(rate - fpr) <= margin(fpr, rows), rate


def test_p_values_of_new_data_are_close_to_uniform() -> None:
    detector = fit(gaussian(REFERENCE_ROWS, FEATURES, 1), "mahalanobis", fpr=0.01)
    p_values = detector.score(gaussian(HELD_OUT_ROWS, FEATURES, 2)).p_values
    for level in (0.01, 0.1, 0.5):
        share = float(np.mean(p_values <= level))
        assert abs(share - level) <= margin(level, REFERENCE_ROWS), (level, share)


def test_a_score_beyond_every_reference_score_has_the_smallest_p_value() -> None:
    reference = gaussian(500, 3, 1)
    detector = fit(reference, "robust_z")
    far = pd.DataFrame({"f0": [1e6], "f1": [10.0], "f2": [10.0]})
    assert detector.score(far).p_values.tolist() == [1 / 501]
