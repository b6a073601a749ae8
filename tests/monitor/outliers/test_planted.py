"""Planted outliers (one feature shifted by many standard deviations) are flagged, with the
shifted feature on top of their contributions; the formulas match independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import mahalanobis
from scipy.stats import median_abs_deviation

from monitor.outliers.detectors import Method, fit
from tests.monitor.outliers.data import METHODS, gaussian, skewed

FEATURES = 6
SHIFT_SD = 12.0


def planted(reference: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One row per feature, that feature moved SHIFT_SD reference standard deviations up."""
    rows = gaussian(FEATURES, FEATURES, seed)
    for j, column in enumerate(reference.columns):
        rows.iloc[j, j] += SHIFT_SD * reference[column].std()
    return rows


@pytest.mark.parametrize("method", ["robust_z", "mahalanobis"])
def test_planted_outliers_are_flagged_with_their_feature_on_top(method: Method) -> None:
    reference = gaussian(1000, FEATURES, 1)
    detector = fit(reference, method, fpr=0.01)
    window = pd.concat([gaussian(300, FEATURES, 2), planted(reference, 3)], ignore_index=True)
    result = detector.score(window)
    assert result.is_outlier[300:].all(), result.scores[300:]
    assert result.is_outlier[:300].mean() < 0.05
    assert result.contributions[300:].argmax(axis=1).tolist() == list(range(FEATURES))


def test_isolation_forest_ranks_planted_outliers_high_and_names_their_feature() -> None:
    """An isolation tree isolates a value beyond the reference's range only when it splits
    on that feature, so one shifted feature among six raises the score less than with the
    other methods: the planted rows rank above typical rows, and rows far out in every
    feature are flagged."""
    reference = gaussian(1000, FEATURES, 1)
    detector = fit(reference, "isolation_forest", fpr=0.01)
    typical = detector.score(gaussian(300, FEATURES, 2))
    single = detector.score(planted(reference, 3))
    assert ((typical.scores > 0) & (typical.scores <= 1)).all()  # anomaly scores in (0, 1]
    assert (single.scores > np.quantile(typical.scores, 0.75)).all()
    assert single.contributions.argmax(axis=1).tolist() == list(range(FEATURES))
    everywhere = gaussian(5, FEATURES, 4) + 6 * reference.std()
    assert detector.score(everywhere).is_outlier.all()


@pytest.mark.parametrize("method", ["robust_z", "mahalanobis"])
def test_planted_outliers_in_skewed_data_put_their_feature_on_top(method: Method) -> None:
    reference = skewed(1000, FEATURES, 1)
    detector = fit(reference, method, fpr=0.01)
    window = skewed(FEATURES, FEATURES, 4)
    for j, column in enumerate(reference.columns):
        window.iloc[j, j] += 30 * reference[column].std()
    result = detector.score(window)
    assert result.is_outlier.all()
    assert result.contributions.argmax(axis=1).tolist() == list(range(FEATURES))


@pytest.mark.parametrize("method", METHODS)
def test_contributions_are_shares_summing_to_one(method: Method) -> None:
    detector = fit(gaussian(400, FEATURES, 1), method)
    result = detector.score(gaussian(200, FEATURES, 2))
    assert result.contributions.shape == (200, FEATURES)
    np.testing.assert_allclose(result.contributions.sum(axis=1), 1.0, rtol=1e-9)


def test_robust_z_is_the_modified_z_score_root_sum_of_squares() -> None:
    reference = skewed(300, 4, 1)
    window = skewed(50, 4, 2)
    detector = fit(reference, "robust_z")
    median = reference.median().to_numpy()
    mad = median_abs_deviation(reference.to_numpy(), axis=0)
    z = 0.6745 * (window.to_numpy() - median) / mad
    result = detector.score(window)
    np.testing.assert_allclose(result.scores, np.sqrt((z**2).sum(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(result.contributions, z**2 / (z**2).sum(axis=1, keepdims=True))


def test_mahalanobis_matches_scipy_on_the_reference_covariance() -> None:
    reference = gaussian(500, FEATURES, 1)
    window = gaussian(40, FEATURES, 2)
    inverse = np.linalg.inv(np.cov(reference.to_numpy(), rowvar=False))
    mean = reference.mean().to_numpy()
    expected = [mahalanobis(row, mean, inverse) for row in window.to_numpy()]
    np.testing.assert_allclose(fit(reference, "mahalanobis").score(window).scores, expected)


def test_mahalanobis_drops_the_directions_a_linear_combination_leaves_empty() -> None:
    """f3 = f0 + f1 exactly: the covariance is singular; the distance is the pseudo-inverse's."""
    reference, window = gaussian(500, 3, 1), gaussian(40, 3, 2)
    for frame in (reference, window):
        frame["f3"] = frame["f0"] + frame["f1"]
    pseudo_inverse = np.linalg.pinv(np.cov(reference.to_numpy(), rowvar=False))
    mean = reference.mean().to_numpy()
    expected = [mahalanobis(row, mean, pseudo_inverse) for row in window.to_numpy()]
    result = fit(reference, "mahalanobis").score(window)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6)
    assert np.isfinite(result.contributions).all()
