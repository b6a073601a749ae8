"""What a reference or a window may hold: constant columns, missing values, one row, no row,
a missing column, text and extreme values. Never a warning (pytest turns them into errors),
an exception or a NaN; a reference that cannot be used is a ValueError that says why."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from monitor.outliers.detectors import (
    Method,
    MissingExtraError,
    OutlierDetector,
    OutlierScores,
    fit,
    require_method,
)
from tests.monitor.outliers.data import METHODS, gaussian


def assert_finite(result: OutlierScores, rows: int, columns: int) -> None:
    assert result.scores.shape == result.is_outlier.shape == result.p_values.shape == (rows,)
    assert result.contributions.shape == (rows, columns)
    assert np.isfinite(result.scores).all()
    assert np.isfinite(result.contributions).all()
    assert ((result.p_values > 0) & (result.p_values <= 1)).all()


def messy_reference() -> pd.DataFrame:
    reference = gaussian(300, 3, 1)
    reference.loc[::10, "f1"] = np.nan  # 10% missing
    reference["constant"] = 5.0
    reference["empty"] = np.nan  # no value at all: ignored
    reference["label"] = "a"
    reference["flag"] = True
    return reference


@pytest.fixture(scope="module", params=METHODS)
def detector(request: pytest.FixtureRequest) -> OutlierDetector:
    method: Method = request.param
    return fit(messy_reference(), method, fpr=0.05)


def test_the_numeric_columns_are_scored_and_the_rest_named(detector: OutlierDetector) -> None:
    assert detector.columns == ["f0", "f1", "f2", "constant"]
    assert detector.ignored == ["empty", "label", "flag"]
    assert np.isfinite(detector.threshold)


def test_missing_values_take_the_reference_median(detector: OutlierDetector) -> None:
    window = gaussian(4, 3, 2)
    window["constant"] = 5.0
    window.loc[0, "f0"] = np.nan
    window.loc[1, ["f0", "f2"]] = np.nan
    result = detector.score(window)
    assert_finite(result, 4, 4)
    assert result.imputed.tolist() == [1, 2, 0, 0]
    filled = window.fillna({"f0": detector.fill[0], "f2": detector.fill[2]})
    np.testing.assert_array_equal(result.scores, detector.score(filled).scores)


def test_a_window_without_a_column_scores_it_as_the_median(detector: OutlierDetector) -> None:
    result = detector.score(gaussian(5, 3, 2).drop(columns="f2"))
    assert_finite(result, 5, 4)
    assert result.imputed.tolist() == [2] * 5  # f2 and constant
    if detector.method != "mahalanobis":  # the median is the robust centre: no contribution
        assert (result.contributions[:, 2] == 0).all()


def test_a_single_row_and_an_empty_window(detector: OutlierDetector) -> None:
    assert_finite(detector.score(gaussian(1, 3, 2)), 1, 4)
    empty = detector.score(gaussian(0, 3, 2))
    assert_finite(empty, 0, 4)
    assert detector.score(pd.DataFrame()).scores.shape == (0,)


def test_text_infinities_and_huge_values_give_finite_scores(detector: OutlierDetector) -> None:
    window = pd.DataFrame(
        {
            "f0": ["1.5", "oops", None, "1e308"],
            "f1": [np.inf, -np.inf, 1e300, -1e300],
            "f2": [[1], {"a": 2}, 3, True],
            "constant": [5.0, 6.0, 1e308, 5.0],
            "unknown": ["x", "y", "z", "w"],
        }
    )
    result = detector.score(window)
    assert_finite(result, 4, 4)
    assert result.imputed.tolist() == [2, 3, 1, 0]  # True counts as 1


def test_a_changed_constant_column_stands_out_for_robust_z() -> None:
    detector = fit(messy_reference(), "robust_z", fpr=0.05)
    window = gaussian(2, 3, 2)
    window["constant"] = [5.0, 6.0]
    result = detector.score(window)
    assert result.is_outlier[1]
    assert result.contributions[1].argmax() == 3


@pytest.mark.parametrize(
    ("reference", "fpr", "message"),
    [
        (gaussian(19, 3, 1), 0.05, "19 rows"),
        (gaussian(50, 3, 1), 0.001, "at least 1000"),
        (pd.DataFrame({"label": ["a"] * 50, "flag": [True] * 50}), 0.05, "no numeric column"),
        (gaussian(50, 3, 1), 0.0, "false-positive rate"),
        (gaussian(50, 3, 1), 1.0, "false-positive rate"),
        (pd.DataFrame({"f0": [1e308, -1e308] * 25}), 0.05, "too large"),
    ],
)
@pytest.mark.parametrize("method", ["robust_z", "mahalanobis"])
def test_an_unusable_reference_is_a_value_error(
    reference: pd.DataFrame, fpr: float, message: str, method: Method
) -> None:
    with pytest.raises(ValueError, match=message):
        fit(reference, method, fpr=fpr)


def test_an_unknown_method_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown outlier method 'lof'"):
        fit(gaussian(50, 3, 1), "lof")  # type: ignore[arg-type]


def test_isolation_forest_without_scikit_learn_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.ensemble", None)  # import fails as if absent
    hint = r"pip install 'infermon\[sklearn\]'"
    with pytest.raises(MissingExtraError, match=hint):
        require_method("isolation_forest")
    with pytest.raises(MissingExtraError, match=hint):
        fit(gaussian(50, 3, 1), "isolation_forest")
    require_method("mahalanobis")
