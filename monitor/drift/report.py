"""A window compared with a reference: one `FeatureDrift` per column, one `DriftReport`.

Never NaN, never an exception for what the data holds: a column that cannot be tested has a
status saying why, and no statistic:

- `error`: the values cannot be read as the column's kind, or the test does not apply to it;
- `empty`: no value present in the reference or in the window;
- `insufficient`: fewer values present than the test needs (e.g. 2 a side for Anderson-Darling);
- `constant`: the reference and the window each hold one value, the same one;
- `ok`: tested.

Thresholds: a column's own configured threshold, else the calibrated one (distances, with
`threshold_mode="calibrated"` and a sketch calibrated for the window size), else the
configured threshold for every column, else the test's default. The p-value tests of the
columns tested are then corrected together (`corrections`); a column's threshold is always one
number.

Beside each test, the share of missing values in the window and the reference is compared
(pooled two-proportion z-test at `missing_threshold`, corrected across the columns like the
tests) and the distinct unseen categories counted. Dataset drift: drifted / tested columns
>= `drift_share`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitor.drift.columns import NotNumeric, numeric_values, with_text_names
from monitor.drift.config import ColumnKind, DriftConfig
from monitor.drift.corrections import correct
from monitor.drift.multivariate import MMD_MIN_SAMPLE, mmd_test, standardise, subsample
from monitor.drift.sketch import ReferenceSketch
from monitor.drift.statistics import STATISTICS, Statistic, automatic, two_proportion_z
from monitor.drift.summary import ColumnSketch, Window, window_column

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
        return {
            "column": self.column,
            "kind": self.kind,
            "test": self.test,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "distance": self.distance,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "drift": self.drift,
            "status": self.status,
            "reason": self.reason,
            "missing_share": self.missing_share,
            "reference_missing_share": self.reference_missing_share,
            "missing_drift": self.missing_drift,
            "unseen_categories": self.unseen_categories,
            "histogram": None if self.histogram is None else asdict(self.histogram),
        }


@dataclass(frozen=True)
class MultivariateDrift:
    test: str  # "mmd"
    statistic: float
    p_value: float
    threshold: float
    drift: bool
    sample: int  # instances of each side used
    status: Status = "ok"
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        return {
            "instances": self.instances,
            "dataset_drift": self.dataset_drift,
            "share": self.share,
            "drifted": self.drifted,
            "valid": self.valid,
            "drift_share": self.drift_share,
            "correction": self.correction,
            "multivariate": None if self.multivariate is None else self.multivariate.as_dict(),
            "features": [feature.as_dict() for feature in self.features],
        }


@dataclass
class _Tested:
    """One column before the correction: what the test gave and the threshold it starts from."""

    column: str
    sketch: ColumnSketch
    test: str
    statistic: Statistic | None
    status: Status
    reason: str | None
    value: float | None  # the statistic
    p_value: float | None
    threshold: float
    threshold_source: str
    window_missing: int
    rows: int
    unseen_categories: int
    histogram: Histogram | None


def compare(sketch: ReferenceSketch, current: pd.DataFrame, config: DriftConfig) -> DriftReport:
    """Each of the sketch's columns that `config` selects, in `current` (missing: all missing)."""
    frame = with_text_names(current)
    rows = len(frame)
    tested = [
        _test_column(name, column, frame[name] if name in frame.columns else None, rows, config)
        for name, column in sketch.columns.items()
        if _selected(name, config)
    ]
    thresholds, drifts = _corrected(tested, config)
    missing_drifts = _missing_drifts(tested, config)
    features = [
        _feature(t, threshold, drift, missing_drift)
        for t, threshold, drift, missing_drift in zip(
            tested, thresholds, drifts, missing_drifts, strict=True
        )
    ]
    valid = sum(feature.status == "ok" for feature in features)
    drifted = sum(feature.drift for feature in features)
    share = drifted / valid if valid else 0.0
    return DriftReport(
        instances=rows,
        dataset_drift=valid > 0 and share >= config.drift_share,
        share=share,
        drifted=drifted,
        valid=valid,
        drift_share=config.drift_share,
        correction=config.correction,
        features=features,
        multivariate=_multivariate(sketch, frame, config) if config.multivariate == "mmd" else None,
    )


def _selected(name: str, config: DriftConfig) -> bool:
    included = config.include is None or name in config.include
    return included and name not in config.exclude


def _choose(name: str, column: ColumnSketch, config: DriftConfig) -> tuple[str, str | None]:
    """The statistic's name, and why it cannot be used (None: it can)."""
    kind_default = config.numeric_test if column.kind == "numeric" else config.categorical_test
    chosen = config.tests.get(name) or kind_default
    if chosen is None:
        return automatic(column).name, None
    statistic = STATISTICS.get(chosen)
    if statistic is None:
        return chosen, f"unknown test {chosen!r}: one of {', '.join(STATISTICS)}"
    if column.kind not in statistic.column_kinds:
        kinds = " or ".join(sorted(statistic.column_kinds))
        return chosen, f"{chosen} applies to {kinds} columns, not {column.kind} ones"
    return chosen, None


def _threshold(
    name: str, statistic: Statistic, column: ColumnSketch, config: DriftConfig
) -> tuple[float, str]:
    if name in config.thresholds:
        return float(config.thresholds[name]), "configured"
    calibrated = column.calibrated.get(statistic.name)
    if (
        config.threshold_mode == "calibrated"
        and statistic.kind == "distance"
        and calibrated is not None
    ):
        return calibrated, "calibrated"
    if config.threshold is not None:
        return float(config.threshold), "configured"
    return statistic.default_threshold, "default"


def _test_column(
    name: str, column: ColumnSketch, values: pd.Series | None, rows: int, config: DriftConfig
) -> _Tested:
    test, problem = _choose(name, column, config)
    statistic = STATISTICS.get(test) if problem is None else None
    threshold, source = (
        _threshold(name, statistic, column, config) if statistic else (0.0, "default")
    )
    result = _Tested(
        name, column, test, statistic, "error", problem or column.error, None, None,
        threshold, source, rows, rows, 0, None,
    )  # fmt: skip
    if result.reason is not None or statistic is None:
        result.window_missing = _missing(values, rows)
        return result
    try:
        window = window_column(values, rows, column)
    except NotNumeric as error:
        result.reason = f"window: {error}"
        result.window_missing = _missing(values, rows)
        return result
    result.window_missing = window.missing
    result.unseen_categories = window.unseen_values
    result.histogram = _histogram(column, window)
    result.status, result.reason = _testable(column, window, statistic)
    if result.status == "ok":
        _run(result, statistic, column, window)
    return result


def _missing(values: pd.Series | None, rows: int) -> int:
    return rows if values is None else int(values.isna().sum())


def _testable(
    column: ColumnSketch, window: Window, statistic: Statistic
) -> tuple[Status, str | None]:
    if column.count == 0:
        return "empty", "no value in the reference"
    if window.count == 0:
        return "empty", "no value in the window"
    smallest = min(column.count, window.count)
    if smallest < statistic.min_sample:
        side = "reference" if column.count < window.count else "window"
        return "insufficient", (
            f"{smallest} value{'s' if smallest > 1 else ''} in the {side}; "
            f"{statistic.name} needs {statistic.min_sample}"
        )
    if column.constant and _same_single_value(column, window):
        return "constant", "one value, the same in the reference and the window"
    return "ok", None


def _same_single_value(column: ColumnSketch, window: Window) -> bool:
    if column.kind == "numeric":
        return bool(window.values[0] == window.values[-1] == column.sample[0])
    return int(window.bins[0]) == window.count


def _run(result: _Tested, statistic: Statistic, column: ColumnSketch, window: Window) -> None:
    try:
        outcome = statistic.function(column, window)
    except Exception as error:  # e.g. scipy's limits on odd samples: this column's status
        result.status, result.reason = "error", f"{statistic.name}: {error or type(error).__name__}"
        return
    numbers = (
        [outcome.statistic] if outcome.p_value is None else [outcome.statistic, outcome.p_value]
    )
    if not all(np.isfinite(numbers)):
        result.status, result.reason = "error", f"{statistic.name} gave no number for this data"
        return
    result.value, result.p_value = outcome.statistic, outcome.p_value


def _histogram(column: ColumnSketch, window: Window) -> Histogram:
    # The unseen bin means something for categories only.
    kept = slice(None) if column.kind == "categorical" else slice(0, -1)
    return Histogram(
        labels=column.labels[kept],
        reference=_shares(column.bins[kept], column.rows),
        current=_shares(window.bins[kept], window.rows),
    )


def _shares(counts: np.ndarray, total: int) -> list[float]:
    return (counts / total).tolist() if total else [0.0] * counts.size


def _corrected(tested: list[_Tested], config: DriftConfig) -> tuple[list[float], list[bool]]:
    thresholds = [t.threshold for t in tested]
    drifts = [False] * len(tested)
    family = [
        i for i, t in enumerate(tested)
        if t.status == "ok" and t.statistic is not None and t.statistic.kind == "p-value"
    ]  # fmt: skip
    for i, t in enumerate(tested):
        if t.status == "ok" and t.statistic is not None and t.statistic.kind == "distance":
            drifts[i] = t.statistic.drifted(float(t.value or 0.0), t.threshold)
    if family:
        p_values = np.array([tested[i].p_value for i in family], dtype=float)
        levels = np.array([tested[i].threshold for i in family])
        corrected, flagged = correct(p_values, levels, config.correction)
        for position, i in enumerate(family):
            thresholds[i], drifts[i] = float(corrected[position]), bool(flagged[position])
    return thresholds, drifts


def _missing_drifts(tested: list[_Tested], config: DriftConfig) -> list[bool]:
    if not tested:
        return []
    p_values = np.array(
        [
            two_proportion_z(t.sketch.missing, t.sketch.rows, t.window_missing, t.rows).p_value
            for t in tested
        ],
        dtype=float,
    )
    levels = np.full(p_values.size, config.missing_threshold)
    return [bool(flag) for flag in correct(p_values, levels, config.correction)[1]]


def _feature(t: _Tested, threshold: float, drift: bool, missing_drift: bool) -> FeatureDrift:
    ok = t.status == "ok"
    is_p = t.statistic is not None and t.statistic.kind == "p-value"
    return FeatureDrift(
        column=t.column,
        kind=t.sketch.kind,
        test=t.test,
        status=t.status,
        reason=t.reason,
        statistic=t.value if ok else None,
        p_value=t.p_value if ok and is_p else None,
        distance=t.value if ok and not is_p else None,
        threshold=threshold,
        threshold_source=t.threshold_source,
        drift=drift,
        missing_share=t.window_missing / t.rows if t.rows else 0.0,
        reference_missing_share=t.sketch.missing / t.sketch.rows if t.sketch.rows else 0.0,
        missing_drift=missing_drift,
        unseen_categories=t.unseen_categories,
        histogram=t.histogram,
    )


def _multivariate(
    sketch: ReferenceSketch, frame: pd.DataFrame, config: DriftConfig
) -> MultivariateDrift:
    names = [name for name in sketch.numeric_columns if _selected(name, config)]
    positions = [sketch.numeric_columns.index(name) for name in names]
    rng = np.random.default_rng(config.seed)
    reference = sketch.mmd_sample[:, positions]
    current = subsample(_numeric_matrix(frame, names), config.mmd_sample, rng)
    current = standardise(current, sketch.mean[positions], sketch.scale[positions])
    sample = min(reference.shape[0], current.shape[0])
    if not names or sample < MMD_MIN_SAMPLE:
        reason = "no numeric column" if not names else f"mmd needs {MMD_MIN_SAMPLE} rows a side"
        return MultivariateDrift(
            "mmd", 0.0, 1.0, config.mmd_threshold, False, sample, "insufficient", reason
        )
    statistic, p_value = mmd_test(reference, current, config.mmd_permutations, rng)
    return MultivariateDrift(
        "mmd", statistic, p_value, config.mmd_threshold, p_value < config.mmd_threshold, sample
    )


def _numeric_matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    columns = []
    for name in names:
        try:
            values = numeric_values(frame[name]) if name in frame.columns else None
        except NotNumeric:
            values = None  # reported by the column's own test; counted missing here
        columns.append(np.full(len(frame), np.nan) if values is None else values)
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))
