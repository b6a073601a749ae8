"""Windows with no drift are flagged no more often than the nominal rate, over 200 trials.

The margin is three binomial standard deviations above the nominal rate (a p-value test at
level 0.05 flags a null window with probability at most 0.05; discrete data makes the tests
conservative, so the observed rate is often below it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from monitor.drift.config import DriftConfig
from monitor.drift.report import compare
from monitor.drift.sketch import summarise

TRIALS = 200
LEVEL = 0.05


def bound(rate: float, trials: int) -> float:
    return rate + 3.0 * math.sqrt(rate * (1.0 - rate) / trials)


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    frame = load_breast_cancer(as_frame=True).frame
    return frame[[*frame.columns[:5], "target"]]  # 5 numeric columns and a binary one


@pytest.fixture(scope="module")
def split_flags(cancer: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per correction, trials x columns: whether each column of a random split drifted."""
    rng = np.random.default_rng(0)
    configs = {name: DriftConfig(correction=name) for name in ("none", "bonferroni")}
    flags: dict[str, list[list[bool]]] = {name: [] for name in configs}
    for _ in range(TRIALS):
        order = rng.permutation(len(cancer))
        reference, current = cancer.iloc[order[:300]], cancer.iloc[order[300:]]
        sketch = summarise(reference, DriftConfig())
        for name, config in configs.items():
            flags[name].append([f.drift for f in compare(sketch, current, config).features])
    return {name: np.array(trials) for name, trials in flags.items()}


def test_uncorrected_tests_flag_each_column_at_most_at_their_level(
    split_flags: dict[str, np.ndarray],
) -> None:
    flags = split_flags["none"]
    assert np.all(flags.mean(axis=0) <= bound(LEVEL, TRIALS)), flags.mean(axis=0)
    assert flags.mean() <= bound(LEVEL, flags.size)


def test_bonferroni_flags_any_column_at_most_at_the_familywise_level(
    split_flags: dict[str, np.ndarray],
) -> None:
    assert split_flags["bonferroni"].any(axis=1).mean() <= bound(LEVEL, TRIALS)
    assert split_flags["bonferroni"].sum() <= split_flags["none"].sum()


@pytest.mark.parametrize("test", ["chisquare", "z"])
def test_categorical_tests_flag_null_windows_at_most_at_their_level(test: str) -> None:
    rng = np.random.default_rng(1)
    categories = ["a", "b"] if test == "z" else ["a", "b", "c", "d"]
    config = DriftConfig(categorical_test=test, correction="none")
    sketch = summarise(pd.DataFrame({"c": rng.choice(categories, 800)}), config)
    flags = [
        compare(sketch, pd.DataFrame({"c": rng.choice(categories, 200)}), config).features[0].drift
        for _ in range(TRIALS)
    ]
    assert np.mean(flags) <= bound(LEVEL, TRIALS)


def test_calibrated_distance_thresholds_rarely_flag_null_windows() -> None:
    """Mean + 3 sigma of the null distances: by Chebyshev at most 1/9 of windows, in practice
    far fewer; checked against the 0.05 level all the same."""
    rng = np.random.default_rng(2)
    config = DriftConfig(threshold_mode="calibrated", calibration_rounds=50)
    reference = pd.DataFrame({"x": rng.gamma(2.0, size=5000), "c": rng.choice(list("abcde"), 5000)})
    sketch = summarise(reference, config, window_size=250)
    flags = [
        [f.drift for f in compare(sketch, pd.DataFrame({
            "x": rng.gamma(2.0, size=250), "c": rng.choice(list("abcde"), 250),
        }), config).features]
        for _ in range(TRIALS)
    ]  # fmt: skip
    assert np.mean(flags, axis=0).max() <= bound(LEVEL, TRIALS)
