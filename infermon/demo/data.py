"""The demo's data and model: scikit-learn's wine data set (it ships inside the package, no
download), a derived categorical column, drift made on purpose, and a classifier fitted at start.

Traffic rows are the data set's rows drawn at random with a little noise, and a `region`.
Drifted rows shift most numeric features by `SHIFT_SD` of their standard deviation and bring a
region the reference never saw, so that the data set as a whole drifts (most columns do) while
the unshifted features stay as they were.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np

MODEL_NAME = "wine"
REGION = "region"
# Unshifted on purpose: the drift reports must leave them alone.
UNSHIFTED_FEATURES = ("ash", "magnesium", "hue", "proline")
# How far a shifted feature moves, in its standard deviations: toward the third cultivar's
# side, so that the classifier errs and accuracy falls in the drifted windows (~0.99 -> ~0.6).
SHIFT_SD = 1.5
NOISE_SD = 0.3  # noise on every traffic value, in the feature's standard deviations
REGIONS = ("north", "south", "east")
REGION_SHARES = (0.5, 0.3, 0.2)
NEW_REGION = "west"  # only in drifted traffic
DRIFTED_REGION_SHARES = (0.3, 0.2, 0.1, 0.4)  # north, south, east, west
DECIMALS = 4

MISSING_SKLEARN = "the demo needs scikit-learn: pip install -e '.[demo]'"


def sklearn_missing() -> bool:
    return importlib.util.find_spec("sklearn") is None


@dataclass(frozen=True)
class Batch:
    """Rows to send, as feature dicts, and their true classes (the feedback labels)."""

    rows: list[dict[str, Any]]
    labels: list[int]


class WineData:
    """The wine data set, its classifier, and rows drawn from it, normal or drifted."""

    def __init__(self, seed: int = 0) -> None:
        datasets, linear_model, pipeline, preprocessing = (
            importlib.import_module(f"sklearn.{name}")
            for name in ("datasets", "linear_model", "pipeline", "preprocessing")
        )
        wine = datasets.load_wine()
        self.features: tuple[str, ...] = tuple(str(name) for name in wine.feature_names)
        self.shifted = tuple(f for f in self.features if f not in UNSHIFTED_FEATURES)
        self._values = np.asarray(wine.data, dtype=float)
        self._classes = np.asarray(wine.target, dtype=int)
        self._sd = self._values.std(axis=0)
        toward = self._values[self._classes == 2].mean(0) - self._values[self._classes == 0].mean(0)
        moved = np.array([name in self.shifted for name in self.features])
        self._shift = moved * np.sign(toward) * SHIFT_SD * self._sd
        self._rng = np.random.default_rng(seed)
        self.classifier = pipeline.make_pipeline(
            preprocessing.StandardScaler(), linear_model.LogisticRegression(max_iter=1000)
        )
        self.classifier.fit(self._values, self._classes)

    def batch(self, size: int, drifted: bool) -> Batch:
        picked = self._rng.integers(0, len(self._values), size)
        noise = self._rng.normal(0.0, NOISE_SD, (size, len(self._sd))) * self._sd
        values = self._values[picked] + noise
        if drifted:
            values = values + self._shift
        regions = self._rng.choice(
            [*REGIONS, NEW_REGION] if drifted else list(REGIONS),
            size=size,
            p=DRIFTED_REGION_SHARES if drifted else REGION_SHARES,
        )
        rows = [
            {**dict(zip(self.features, np.round(row, DECIMALS).tolist(), strict=True)),
             REGION: str(region)}
            for row, region in zip(values, regions, strict=True)
        ]  # fmt: skip
        return Batch(rows=rows, labels=[int(c) for c in self._classes[picked]])

    def predict(self, rows: list[dict[str, Any]]) -> list[int]:
        """The classifier's classes; `ValueError` when a row lacks a feature or holds text."""
        matrix = np.array([[_number(row, name) for name in self.features] for row in rows])
        if not len(matrix):
            return []
        return [int(c) for c in self.classifier.predict(matrix)]


def _number(row: dict[str, Any], name: str) -> float:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"feature {name!r} must be a number, not {value!r}")
    return float(value)
