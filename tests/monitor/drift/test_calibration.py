"""Distance thresholds calibrated on the reference for a window size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitor.drift.config import DriftConfig
from monitor.drift.report import compare
from monitor.drift.sketch import summarise
from tests.monitor.drift.frames import mixed_frame


def test_calibration_draws_windows_against_the_other_rows_and_stores_mean_plus_3_sigma() -> None:
    frame = mixed_frame(2000, 4)
    config = DriftConfig(threshold_mode="calibrated", calibration_rounds=40)
    small = summarise(frame, config, window_size=50).columns["x"].calibrated
    large = summarise(frame, config, window_size=800).columns["x"].calibrated
    assert set(small) == {"psi", "kl_div", "jensenshannon", "hellinger", "wasserstein"}
    assert set(summarise(frame, config, window_size=50).columns["c"].calibrated) == {
        "psi", "kl_div", "jensenshannon", "hellinger",
    }  # fmt: skip
    for name in small:  # a smaller window is noisier: its threshold is higher
        assert small[name] > large[name] > 0.0
    assert summarise(frame, DriftConfig(), window_size=50).window_size is None  # mode default


@pytest.mark.parametrize(("rows", "rounds"), [(1, 50), (100, 1), (100, 0)])
def test_too_small_a_reference_or_too_few_rounds_keeps_the_default_thresholds(
    rows: int, rounds: int
) -> None:
    config = DriftConfig(threshold_mode="calibrated", calibration_rounds=rounds, numeric_test="psi")
    sketch = summarise(pd.DataFrame({"x": np.arange(float(rows))}), config, window_size=10)
    assert sketch.columns["x"].calibrated == {}
    report = compare(sketch, pd.DataFrame({"x": [1.0, 2.0]}), config)
    assert report.features[0].threshold_source == "default"
