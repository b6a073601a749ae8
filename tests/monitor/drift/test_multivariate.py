"""MMD over the numeric columns: a change in their joint distribution that no single column
shows, a permutation p-value that is never 0, and a status when it cannot run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.drift.config import DriftConfig
from monitor.drift.multivariate import mmd_test
from monitor.drift.report import compare
from monitor.drift.sketch import summarise

CONFIG = DriftConfig(multivariate="mmd", mmd_sample=200, mmd_permutations=100)


def pairs(rows: int, correlation: float, rng: np.random.Generator) -> pd.DataFrame:
    x = rng.normal(size=rows)
    y = correlation * x + np.sqrt(1 - correlation**2) * rng.normal(size=rows)
    return pd.DataFrame({"x": x, "y": y})


def test_mmd_sees_a_correlation_change_the_columns_alone_do_not() -> None:
    rng = np.random.default_rng(0)
    reference, current = pairs(2000, 0.0, rng), pairs(400, 0.95, rng)
    config = DriftConfig(multivariate="mmd", mmd_sample=200, numeric_test="ks")
    report = compare(summarise(reference, config), current, config)
    assert not any(feature.drift for feature in report.features)
    assert report.multivariate is not None and report.multivariate.drift
    assert report.multivariate.p_value == pytest.approx(1 / 101)  # (1 + 0) / (1 + B)
    assert report.multivariate.sample == 200


def test_mmd_does_not_flag_a_window_from_the_reference_distribution() -> None:
    rng = np.random.default_rng(1)
    report = compare(summarise(pairs(2000, 0.5, rng), CONFIG), pairs(400, 0.5, rng), CONFIG)
    assert report.multivariate is not None
    assert not report.multivariate.drift and report.multivariate.p_value > 0.05


def test_the_observed_split_counts_among_the_permutations() -> None:
    rng = np.random.default_rng(2)
    same = rng.normal(size=(30, 2))
    statistic, p_value = mmd_test(same, same.copy(), 50, rng)
    assert p_value == 1.0  # every permutation is at least as extreme as identical samples
    assert statistic < 0.0  # the unbiased estimate can be negative


@pytest.mark.parametrize(
    ("reference", "current", "reason"),
    [
        (pd.DataFrame({"c": ["a", "b"] * 10}), pd.DataFrame({"c": ["a"] * 5}), "no numeric column"),
        (
            pd.DataFrame({"x": np.arange(20.0)}),
            pd.DataFrame({"x": [1.0]}),
            "mmd needs 2 rows a side",
        ),
    ],
)
def test_mmd_that_cannot_run_says_why(
    reference: pd.DataFrame, current: pd.DataFrame, reason: str
) -> None:
    report = compare(summarise(reference, CONFIG), current, CONFIG)
    assert report.multivariate is not None
    assert (report.multivariate.status, report.multivariate.reason) == ("insufficient", reason)
    assert not report.multivariate.drift


def test_no_multivariate_test_unless_configured() -> None:
    frame = pairs(100, 0.0, np.random.default_rng(3))
    assert compare(summarise(frame, DriftConfig()), frame, DriftConfig()).multivariate is None
