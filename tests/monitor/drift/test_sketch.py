"""The reference sketch: what it keeps, stored as bytes without pickle, calibrated thresholds."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from monitor.drift.config import DriftConfig
from monitor.drift.report import compare
from monitor.drift.sketch import ReferenceSketch, SketchFormatError, summarise
from monitor.drift.summary import SAMPLE_CAP
from tests.monitor.drift.frames import mixed_frame


def test_bytes_round_trip_gives_the_same_report() -> None:
    config = DriftConfig(threshold_mode="calibrated", multivariate="mmd", calibration_rounds=10)
    sketch = summarise(mixed_frame(3000, 0), config, window_size=300)
    restored = ReferenceSketch.from_bytes(sketch.to_bytes())
    current = mixed_frame(300, 1)
    assert (
        compare(restored, current, config).as_dict() == compare(sketch, current, config).as_dict()
    )
    assert restored.kinds == sketch.kinds == {
        "x": "numeric", "y": "numeric", "c": "categorical", "n": "categorical",
    }  # fmt: skip
    assert restored.window_size == 300
    assert restored.columns["x"].calibrated == sketch.columns["x"].calibrated != {}


def test_the_bytes_load_without_pickle() -> None:
    data = summarise(mixed_frame(100, 0), DriftConfig()).to_bytes()
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        assert all(stored[name].dtype != object for name in stored.files)


@pytest.mark.parametrize("data", [b"", b"not a sketch", b"PK\x03\x04 truncated zip"])
def test_bytes_that_are_not_a_sketch_are_refused_clearly(data: bytes) -> None:
    with pytest.raises(SketchFormatError):
        ReferenceSketch.from_bytes(data)


def test_the_sorted_sample_is_capped_at_evenly_spaced_order_statistics() -> None:
    values = np.random.default_rng(2).normal(size=SAMPLE_CAP + 50_001)
    sketch = summarise(pd.DataFrame({"x": values}), DriftConfig())
    sample = sketch.columns["x"].sample
    assert sample.size == SAMPLE_CAP
    assert np.all(np.diff(sample) >= 0)
    assert (sample[0], sample[-1]) == (values.min(), values.max())
    assert sketch.columns["x"].count == values.size


def test_mean_and_covariance_of_the_numeric_columns() -> None:
    frame = mixed_frame(500, 3)
    sketch = summarise(frame, DriftConfig())
    assert sketch.numeric_columns == ["x", "y"]
    assert sketch.mean == pytest.approx([frame["x"].mean(), frame["y"].mean()], rel=1e-12)
    assert sketch.covariance == pytest.approx(frame[["x", "y"]].cov().to_numpy(), rel=1e-12)
