"""`compare`: statuses instead of NaN or exceptions, thresholds and their sources, corrections,
missing values and unseen categories beside the test, dataset drift over the columns tested."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.drift.config import DriftConfig
from monitor.drift.report import DriftReport, FeatureDrift, compare
from monitor.drift.sketch import summarise
from monitor.drift.statistics import NUMERIC, STATISTICS, Outcome, Statistic

FEATURE_KEYS = {
    "column", "kind", "test", "statistic", "p_value", "distance", "threshold",
    "threshold_source", "drift", "status", "reason", "missing_share",
    "reference_missing_share", "missing_drift", "unseen_categories", "histogram",
}  # fmt: skip
REPORT_KEYS = {
    "instances", "dataset_drift", "share", "drifted", "valid", "drift_share", "correction",
    "multivariate", "features",
}  # fmt: skip


def report_of(reference: pd.DataFrame, current: pd.DataFrame, **options: Any) -> DriftReport:
    config = DriftConfig(**options)
    return compare(summarise(reference, config), current, config)


def feature(report: DriftReport, column: str) -> FeatureDrift:
    return next(f for f in report.features if f.column == column)


def assert_no_nan(value: object) -> None:
    """Every number in the JSON form is finite (null where there is none)."""
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for item in value.values():
            assert_no_nan(item)
    elif isinstance(value, list):
        for item in value:
            assert_no_nan(item)


def awkward_frame(rows: int, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "normal": rng.normal(size=rows),
            "constant": np.full(rows, 7.0),
            "all_missing": np.full(rows, np.nan),
            "half_missing": np.where(rng.random(rows) < 0.5, np.nan, rng.normal(size=rows)),
            "single_category": ["only"] * rows,
            "letters": rng.choice(list("abc"), rows),
            "flag": rng.random(rows) < 0.3,
            "prediction": rng.normal(size=rows),
        }
    )


@pytest.mark.parametrize("test", sorted(STATISTICS))
@pytest.mark.parametrize("current_rows", [0, 1, 2, 50])
@pytest.mark.parametrize("reference_rows", [0, 1, 2, 60])
def test_any_statistic_on_awkward_columns_gives_statuses_never_nan(
    test: str, current_rows: int, reference_rows: int
) -> None:
    rng = np.random.default_rng(reference_rows * 100 + current_rows)
    reference, current = awkward_frame(reference_rows, rng), awkward_frame(current_rows, rng)
    statistic = STATISTICS[test]
    report = report_of(
        reference,
        current,
        numeric_test=test if "numeric" in statistic.column_kinds else None,
        categorical_test=test if "categorical" in statistic.column_kinds else None,
        multivariate="mmd",
    )
    as_dict = report.as_dict()
    assert_no_nan(as_dict)
    assert set(as_dict) == REPORT_KEYS
    for item in as_dict["features"]:
        assert set(item) == FEATURE_KEYS
        assert item["status"] in ("ok", "insufficient", "empty", "constant", "error")
        assert (item["status"] == "ok") == (item["statistic"] is not None)
        assert item["status"] == "ok" or item["reason"]
    assert report.valid == sum(f.status == "ok" for f in report.features)
    assert report.share == (report.drifted / report.valid if report.valid else 0.0)


def test_statuses_say_why_a_column_was_not_tested() -> None:
    rng = np.random.default_rng(1)
    reference, current = awkward_frame(200, rng), awkward_frame(100, rng)
    current["single_category"] = "only"
    report = report_of(reference, current)
    assert feature(report, "normal").status == "ok"
    assert feature(report, "constant").status == "constant"
    assert feature(report, "single_category").status == "constant"
    assert feature(report, "all_missing").status == "empty"
    assert feature(report, "all_missing").reason == "no value in the reference"
    assert report.valid == 5  # normal, half_missing, letters, flag, prediction


def test_a_constant_reference_column_that_changes_is_tested_and_drifts() -> None:
    reference = pd.DataFrame({"x": np.full(100, 1.0), "c": ["a"] * 100})
    current = pd.DataFrame({"x": np.linspace(0, 2, 50), "c": ["a", "b"] * 25})
    report = report_of(reference, current)
    for column in ("x", "c"):
        assert feature(report, column).status == "ok"
        assert feature(report, column).drift
    assert feature(report, "c").unseen_categories == 1


def test_a_window_with_every_value_missing_is_empty_and_its_missing_share_drifts() -> None:
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(list("ab"), 500)})
    current = pd.DataFrame({"x": np.full(200, np.nan), "c": [None] * 200})
    report = report_of(reference, current)
    for column in ("x", "c"):
        result = feature(report, column)
        assert (result.status, result.reason) == ("empty", "no value in the window")
        assert result.missing_share == 1.0 and result.reference_missing_share == 0.0
        assert result.missing_drift and not result.drift
    assert report.valid == 0 and report.share == 0.0 and not report.dataset_drift


def test_a_column_absent_from_the_window_counts_as_all_missing() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(size=300), "y": rng.normal(size=300)})
    report = report_of(reference, pd.DataFrame({"x": rng.normal(size=100)}))
    assert feature(report, "y").status == "empty"
    assert feature(report, "y").missing_share == 1.0


def test_missing_share_change_is_flagged_beside_an_unchanged_distribution() -> None:
    rng = np.random.default_rng(4)
    reference = pd.DataFrame({"x": rng.normal(size=2000), "y": rng.normal(size=2000)})
    current = pd.DataFrame({"x": rng.normal(size=1000), "y": rng.normal(size=1000)})
    current.loc[current.index[:300], "x"] = np.nan
    report = report_of(reference, current)
    assert feature(report, "x").missing_drift and not feature(report, "x").drift
    assert feature(report, "x").missing_share == pytest.approx(0.3)
    assert not feature(report, "y").missing_drift


def test_too_few_values_for_the_test_is_insufficient() -> None:
    reference = pd.DataFrame({"x": np.arange(30.0)})
    report = report_of(reference, pd.DataFrame({"x": [3.0]}), numeric_test="anderson")
    result = feature(report, "x")
    assert result.status == "insufficient"
    assert result.reason == "1 value in the window; anderson needs 2"


def test_a_test_that_does_not_apply_or_does_not_exist_is_an_error_status() -> None:
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(size=50), "c": rng.choice(list("ab"), 50)})
    report = report_of(reference, reference, tests={"x": "chisquare", "c": "nope"})
    assert feature(report, "x").status == "error"
    assert (
        feature(report, "x").reason == "chisquare applies to categorical columns, not numeric ones"
    )
    assert feature(report, "c").status == "error"
    assert "unknown test 'nope'" in (feature(report, "c").reason or "")


def test_values_that_are_not_numbers_in_a_numeric_column_are_an_error_status() -> None:
    reference = pd.DataFrame({"x": np.arange(20.0)})
    report = report_of(reference, pd.DataFrame({"x": ["1", "two", "3"]}))
    assert feature(report, "x").status == "error"
    assert feature(report, "x").reason == "window: 1 values are not numbers"
    forced = report_of(pd.DataFrame({"x": ["a", "b"]}), reference, kinds={"x": "numeric"})
    assert feature(forced, "x").status == "error"


def test_unhashable_values_are_compared_by_their_text() -> None:
    reference = pd.DataFrame({"tags": [["a"], ["b"], ["a"], None] * 10})
    current = pd.DataFrame({"tags": [["a"], ["c"]] * 10})
    result = feature(report_of(reference, current), "tags")
    assert result.status == "ok" and result.unseen_categories == 1


def test_thresholds_come_from_the_column_then_the_config_then_the_test() -> None:
    rng = np.random.default_rng(6)
    reference = pd.DataFrame({"a": rng.normal(size=3000), "b": rng.normal(size=3000)})
    current = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    default = report_of(reference, current)
    assert [(f.threshold, f.threshold_source) for f in default.features] == [(0.1, "default")] * 2
    configured = report_of(reference, current, thresholds={"a": 0.3}, threshold=0.2)
    assert (feature(configured, "a").threshold, feature(configured, "a").threshold_source) == (
        0.3, "configured",
    )  # fmt: skip
    assert feature(configured, "b").threshold == 0.2


def test_calibrated_thresholds_are_used_for_distances_and_say_so() -> None:
    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"x": rng.normal(size=3000), "c": rng.choice(list("abcd"), 3000)})
    current = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(list("abcd"), 200)})
    config = DriftConfig(threshold_mode="calibrated", calibration_rounds=30)
    report = compare(summarise(reference, config, window_size=200), current, config)
    for result in report.features:
        assert result.threshold_source == "calibrated"
        assert 0.0 < result.threshold < 1.0 and not result.drift
    p_value = DriftConfig(threshold_mode="calibrated", numeric_test="ks", calibration_rounds=5)
    report = compare(summarise(reference, p_value, window_size=200), current, p_value)
    assert feature(report, "x").threshold_source == "default"


def test_bonferroni_divides_the_threshold_by_the_p_value_tests() -> None:
    rng = np.random.default_rng(8)
    reference = pd.DataFrame({f"x{i}": rng.normal(size=300) for i in range(4)})
    reference["big"] = rng.normal(size=300)
    current = pd.DataFrame({f"x{i}": rng.normal(size=100) for i in range(4)})
    current["big"] = rng.normal(size=100)
    report = report_of(reference, current, tests={"big": "psi"})
    assert [f.threshold for f in report.features] == [0.05 / 4] * 4 + [0.1]
    none = report_of(reference, current, correction="none")
    assert {f.threshold for f in none.features} == {0.05}


def test_dataset_drift_when_the_drifted_share_of_tested_columns_reaches_drift_share() -> None:
    rng = np.random.default_rng(9)
    reference = pd.DataFrame({f"x{i}": rng.normal(size=400) for i in range(4)})
    reference["empty"] = np.nan
    current = pd.DataFrame({f"x{i}": rng.normal(size=200) for i in range(4)})
    current["x0"] += 2.0
    current["x1"] += 2.0
    report = report_of(reference, current, numeric_test="ks")
    assert (report.drifted, report.valid, report.share) == (2, 4, 0.5)
    assert report.dataset_drift
    assert not report_of(reference, current, numeric_test="ks", drift_share=0.6).dataset_drift


def test_histograms_share_the_reference_bins() -> None:
    rng = np.random.default_rng(10)
    reference = pd.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(list("ab"), 1000)})
    current = pd.DataFrame({"x": rng.normal(1, 1, 300), "c": rng.choice(list("abz"), 300)})
    report = report_of(reference, current)
    numeric = feature(report, "x").histogram
    assert numeric is not None and len(numeric.labels) == 11  # 10 quantile bins, missing
    assert numeric.labels[0].startswith("(-inf, ") and numeric.labels[-1] == "missing"
    assert numeric.reference[:10] == pytest.approx([0.1] * 10)
    assert sum(numeric.current) == pytest.approx(1.0)
    categorical = feature(report, "c").histogram
    assert categorical is not None and categorical.labels[-2:] == ["missing", "unseen"]
    assert categorical.current[-1] > 0.2


def test_prediction_columns_are_columns_like_any_other() -> None:
    rng = np.random.default_rng(11)
    reference = pd.DataFrame(
        {"prediction": rng.normal(size=300), "prediction.label": rng.choice(list("ab"), 300)}
    )
    current = pd.DataFrame({"prediction": rng.normal(3, 1, 100), "prediction.label": ["a"] * 100})
    report = report_of(reference, current)
    assert [f.column for f in report.features if f.drift] == ["prediction", "prediction.label"]


def test_include_and_exclude_select_columns() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 4.0], "c": [0.5, 1.5, 9.0]})
    assert [f.column for f in report_of(frame, frame, include=["a", "c"]).features] == ["a", "c"]
    assert [f.column for f in report_of(frame, frame, exclude=["a"]).features] == ["b", "c"]


def test_names_that_are_not_text_or_repeat_are_handled() -> None:
    reference = pd.DataFrame([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], columns=[0, "a", "a"])
    current = pd.DataFrame([[1.5, 2.5, 9.0]], columns=[0, "a", "a"])
    report = report_of(reference, current)
    assert [f.column for f in report.features] == ["0", "a"]
    assert all(f.status == "ok" for f in report.features)


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [(RuntimeError("no convergence"), "failing: no convergence"),
     (Outcome(float("nan"), 0.5), "failing gave no number for this data")],
)  # fmt: skip
def test_a_statistic_that_fails_or_gives_nan_is_that_columns_error_only(
    monkeypatch: pytest.MonkeyPatch, outcome: object, reason: str
) -> None:
    def failing(reference: object, window: object) -> Outcome:
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[return-value]

    monkeypatch.setitem(
        STATISTICS, "failing", Statistic("failing", "p-value", NUMERIC, 0.05, 1, failing, "x")
    )
    frame = pd.DataFrame({"x": np.linspace(0, 1, 12), "y": np.linspace(0, 1, 12)})
    report = report_of(frame, frame + 5, tests={"x": "failing"}, numeric_test="ks")
    assert (feature(report, "x").status, feature(report, "x").reason) == ("error", reason)
    assert feature(report, "y").status == "ok" and report.valid == 1
