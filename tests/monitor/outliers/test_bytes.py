"""A detector stored as bytes (no pickle) scores exactly as before; bytes that are not a
stored detector are a ValueError."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pandas as pd
import pytest

from monitor.outliers.detectors import CALIBRATION_STORED, Method, OutlierDetector, fit
from tests.monitor.outliers.data import METHODS, gaussian, skewed


@pytest.mark.parametrize("method", METHODS)
def test_a_round_trip_scores_identically(method: Method) -> None:
    reference = skewed(600, 5, 1)
    reference["label"] = "x"
    reference.loc[::7, "f2"] = np.nan
    detector = fit(reference, method, fpr=0.02, seed=11)
    window = skewed(500, 5, 2)
    window.loc[::5, "f0"] = np.nan
    stored = OutlierDetector.from_bytes(detector.to_bytes())
    for name in ("method", "columns", "ignored", "threshold", "fpr", "seed", "reference_rows"):
        assert getattr(stored, name) == getattr(detector, name), name
    before, after = detector.score(window), stored.score(window)
    for name in ("scores", "is_outlier", "contributions", "p_values", "imputed"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name), err_msg=name)


def test_an_isolation_forest_is_refitted_from_a_bounded_sample() -> None:
    detector = fit(gaussian(5000, 3, 1), "isolation_forest")
    data = detector.to_bytes()
    with np.load(BytesIO(data), allow_pickle=False) as stored:
        assert stored["model.sample"].shape == (2048, 3)
    window = gaussian(50, 3, 2)
    first, second = OutlierDetector.from_bytes(data), OutlierDetector.from_bytes(data)
    np.testing.assert_array_equal(first.score(window).scores, second.score(window).scores)


def test_a_large_reference_stores_a_bounded_set_of_scores() -> None:
    rows = CALIBRATION_STORED + 5000
    detector = fit(gaussian(rows, 2, 1), "robust_z", fpr=0.05)
    assert len(detector.calibration) == CALIBRATION_STORED
    far = pd.DataFrame({"f0": [1e9], "f1": [0.0]})
    assert detector.score(far).p_values.tolist() == [1 / (rows + 1)]
    rate = detector.score(gaussian(20_000, 2, 2)).is_outlier.mean()
    assert abs(rate - 0.05) < 0.01


@pytest.mark.parametrize(
    "data",
    [b"", b"not a detector", b"PK\x03\x04 truncated zip"],
)
def test_bytes_that_are_not_a_detector_are_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a stored outlier detector"):
        OutlierDetector.from_bytes(data)


def test_a_pickled_array_is_refused() -> None:
    buffer = BytesIO()
    np.savez(buffer, header=np.array([{"format": "infermon.outliers"}], dtype=object))
    with pytest.raises(ValueError, match="not a stored outlier detector"):
        OutlierDetector.from_bytes(buffer.getvalue())


def test_another_format_is_a_value_error() -> None:
    buffer = BytesIO()
    np.savez(buffer, header=np.frombuffer(b'{"format": "other", "version": 1}', dtype=np.uint8))
    with pytest.raises(ValueError, match="'other'"):
        OutlierDetector.from_bytes(buffer.getvalue())


def test_a_plain_array_file_is_a_value_error() -> None:
    buffer = BytesIO()
    np.save(buffer, np.arange(3))
    with pytest.raises(ValueError, match="not a stored outlier detector"):
        OutlierDetector.from_bytes(buffer.getvalue())
