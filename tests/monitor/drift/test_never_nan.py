"""Whatever a window and a reference hold (floats with NaN and infinities, integers, text with
gaps, booleans; 0 to 30 rows), `compare` gives a report with no NaN and raises nothing, for
every statistic and correction."""

from __future__ import annotations

import math

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.drift.config import DriftConfig
from monitor.drift.report import compare
from monitor.drift.sketch import summarise
from monitor.drift.statistics import STATISTICS

FLOATS = st.one_of(
    st.floats(-1e6, 1e6), st.just(float("nan")), st.just(float("inf")), st.sampled_from([0.0, 1.0])
)
TEXT = st.one_of(st.none(), st.sampled_from(["a", "b", "c", ""]))


def frames(rows: int) -> st.SearchStrategy[pd.DataFrame]:
    return st.fixed_dictionaries(
        {
            "f": st.lists(FLOATS, min_size=rows, max_size=rows),
            "i": st.lists(st.integers(-3, 3), min_size=rows, max_size=rows),
            "t": st.lists(TEXT, min_size=rows, max_size=rows),
            "b": st.lists(st.booleans(), min_size=rows, max_size=rows),
        }
    ).map(lambda columns: pd.DataFrame(columns, index=range(rows)))


def sized_frame() -> st.SearchStrategy[pd.DataFrame]:
    return st.integers(0, 30).flatmap(frames)


def assert_finite(value: object) -> None:
    if isinstance(value, float):
        assert math.isfinite(value), value
    elif isinstance(value, dict):
        for item in value.values():
            assert_finite(item)
    elif isinstance(value, list):
        for item in value:
            assert_finite(item)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reference=sized_frame(),
    current=sized_frame(),
    test=st.sampled_from(sorted(STATISTICS)),
    correction=st.sampled_from(["none", "bonferroni", "fdr"]),
    calibrated=st.booleans(),
)
def test_compare_never_gives_nan_and_never_raises(
    reference: pd.DataFrame, current: pd.DataFrame, test: str, correction: str, calibrated: bool
) -> None:
    kinds = STATISTICS[test].column_kinds
    config = DriftConfig(
        numeric_test=test if "numeric" in kinds else None,
        categorical_test=test if "categorical" in kinds else None,
        correction=correction,  # type: ignore[arg-type]
        threshold_mode="calibrated" if calibrated else "default",
        calibration_rounds=5,
        multivariate="mmd",
        mmd_permutations=20,
    )
    sketch = summarise(reference, config, window_size=max(len(current), 1))
    report = compare(sketch, current, config).as_dict()
    assert_finite(report)
    assert len(report["features"]) == 4
