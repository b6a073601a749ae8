"""Reference-like data for the outlier tests: correlated Gaussian and skewed (log-normal)."""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("robust_z", "mahalanobis", "isolation_forest")


def mixing(features: int, seed: int = 7) -> np.ndarray:
    """A fixed matrix that correlates independent normals (moderately, with varied scales)."""
    rng = np.random.default_rng(seed)
    return np.eye(features) + 0.25 * rng.normal(size=(features, features))


def gaussian(rows: int, features: int, seed: int) -> pd.DataFrame:
    normals = np.random.default_rng(seed).normal(size=(rows, features))
    return _frame(normals @ mixing(features) * 3.0 + 10.0)


def skewed(rows: int, features: int, seed: int) -> pd.DataFrame:
    """Correlated log-normal columns: long right tails."""
    normals = np.random.default_rng(seed).normal(size=(rows, features))
    return _frame(np.exp(0.6 * normals @ mixing(features)))


def _frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, columns=[f"f{j}" for j in range(values.shape[1])])
