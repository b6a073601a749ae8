"""A window compared with a reference: one `FeatureDrift` per column, one `DriftReport`.

(Interface fixed for the other parts of the monitor; the implementation lands with the
statistics.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from monitor.drift.config import ColumnKind, DriftConfig
from monitor.drift.sketch import ReferenceSketch

Status = Literal["ok", "insufficient", "empty", "constant", "error"]


@dataclass(frozen=True)
class Histogram:
    """Reference and current shares over the reference's bins (same edges for both)."""

    labels: list[str]  # e.g. "(-inf, 1.5]", "(1.5, 2.7]", ..., "missing", "unseen"
    reference: list[float]
    current: list[float]


@dataclass(frozen=True)
class FeatureDrift:
    column: str
    kind: ColumnKind
    test: str  # a name in the statistics registry
    status: Status
    reason: str | None  # why a column that is not `ok` could not be tested
    statistic: float | None
    p_value: float | None  # p-value tests
    distance: float | None  # distance tests
    threshold: float
    threshold_source: str  # "default", "configured" or "calibrated"
    drift: bool
    missing_share: float  # in the current window
    reference_missing_share: float
    missing_drift: bool  # the missing share changed (two-proportion z-test)
    unseen_categories: int  # distinct current values the reference never had
    histogram: Histogram | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of `infermon drift --json` and of the stored reports."""
        raise NotImplementedError


@dataclass(frozen=True)
class MultivariateDrift:
    test: str  # "mmd"
    statistic: float
    p_value: float
    threshold: float
    drift: bool
    sample: int  # instances of each side used


@dataclass(frozen=True)
class DriftReport:
    instances: int
    dataset_drift: bool
    share: float  # drifted / valid columns; 0.0 with no valid column
    drifted: int
    valid: int
    drift_share: float
    correction: str
    features: list[FeatureDrift]
    multivariate: MultivariateDrift | None

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError


def compare(sketch: ReferenceSketch, current: pd.DataFrame, config: DriftConfig) -> DriftReport:
    """Each of the sketch's columns that `config` selects, in `current` (missing: all missing)."""
    raise NotImplementedError
