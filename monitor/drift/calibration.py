"""Distance thresholds calibrated on the reference.

For each distance statistic a column's kind allows, `calibration_rounds` times, `window_size`
reference rows drawn at random (at most half the reference) are compared with the *other*
rows, on the full reference's bins; the threshold is the mean of those distances plus 3
standard deviations. Comparing a subsample with a reference that contains it would give
distances that are too small, and so thresholds too tight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from monitor.drift.columns import numeric_values, reference_categories
from monitor.drift.config import DriftConfig
from monitor.drift.statistics import distances_for
from monitor.drift.summary import (
    ColumnSketch,
    Window,
    categorical_sketch,
    numeric_sketch,
    numeric_window,
)

CALIBRATION_SIGMAS = 3.0
# The rows chosen as the window -> (a sketch of the other rows, the window).
Split = Callable[[np.ndarray], tuple[ColumnSketch, Window]]


def calibrated(
    values: pd.Series,
    column: ColumnSketch,
    config: DriftConfig,
    window_size: int,
    rng: np.random.Generator,
) -> ColumnSketch:
    rows = column.rows
    size = min(window_size, rows // 2)
    if size < 1 or config.calibration_rounds < 2:  # a spread needs two distances
        return column
    statistics = distances_for(column.kind)
    split = (
        _numeric_split(values, column)
        if column.kind == "numeric"
        else _categorical_split(values, column)
    )
    distances: dict[str, list[float]] = {s.name: [] for s in statistics}
    for _ in range(config.calibration_rounds):
        chosen = np.zeros(rows, dtype=bool)
        chosen[rng.choice(rows, size, replace=False)] = True
        rest, window = split(chosen)
        for statistic in statistics:
            # As in a report: a draw with too few values present is not tested, so not counted.
            if min(rest.count, window.count) >= statistic.min_sample:
                distances[statistic.name].append(statistic.function(rest, window).statistic)
    found = {
        name: float(np.mean(values) + CALIBRATION_SIGMAS * np.std(values, ddof=1))
        for name, values in distances.items()
        if len(values) >= 2 and np.all(np.isfinite(values))
    }
    return replace(column, calibrated=found)


def _numeric_split(values: pd.Series, column: ColumnSketch) -> Split:
    """Rows laid out sorted, missing ones last, so that any subset of them stays sorted."""
    array = numeric_values(values)
    present = np.sort(array[~np.isnan(array)])
    ordered = np.concatenate((present, np.full(column.rows - present.size, np.nan)))
    is_present = ~np.isnan(ordered)

    def split(chosen: np.ndarray) -> tuple[ColumnSketch, Window]:
        rest = ~chosen
        rest_sketch = numeric_sketch(
            ordered[rest & is_present], int(np.count_nonzero(rest & ~is_present)), 0, column.edges
        )
        window = numeric_window(
            ordered[chosen & is_present], int(np.count_nonzero(chosen & ~is_present)), column.edges
        )
        return rest_sketch, window

    return split


def _categorical_split(values: pd.Series, column: ColumnSketch) -> Split:
    _, _, codes = reference_categories(values)
    categories = len(column.categories)

    def counts(selected: np.ndarray) -> tuple[np.ndarray, int]:
        picked = codes[selected]
        present = picked[picked >= 0]
        return np.bincount(present, minlength=categories), picked.size - present.size

    def split(chosen: np.ndarray) -> tuple[ColumnSketch, Window]:
        rest_counts, rest_missing = counts(~chosen)
        window_counts, window_missing = counts(chosen)
        rest = categorical_sketch(column.categories, rest_counts, rest_missing)
        bins = np.concatenate((window_counts, [window_missing, 0])).astype(np.int64)
        return rest, Window(int(chosen.sum()), int(window_counts.sum()), bins, np.empty(0))

    return split
