"""Distance thresholds calibrated on the reference for a window size."""

from __future__ import annotations

import pandas as pd

from monitor.drift.config import DriftConfig
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


def test_a_reference_too_small_to_split_keeps_the_default_thresholds() -> None:
    config = DriftConfig(threshold_mode="calibrated")
    sketch = summarise(pd.DataFrame({"x": [1.0]}), config, window_size=10)
    assert sketch.columns["x"].calibrated == {}
