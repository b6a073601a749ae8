"""One window evaluated: its instances compared with the reference, its outliers scored, and
the result as the rows the store keeps (`WindowReport`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitor.detection_config import ModelDetection
from monitor.drift.report import DriftReport, FeatureDrift, compare
from monitor.references import LoadedReference
from monitor.store.read import INSTANCE_KEY_COLUMNS
from monitor.store.windows import WindowReport


@dataclass(frozen=True)
class Evaluation:
    report: DriftReport
    rows: WindowReport


def plain(value: Any) -> Any:
    """`value` with numpy scalars as Python's, and a non-finite float as None: what JSON
    and both databases' drivers take."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def feature_row(feature: FeatureDrift) -> dict[str, Any]:
    """A feature's `drift_features` row (without report_id and position)."""
    row = {field.name: getattr(feature, field.name) for field in dataclasses.fields(feature)}
    if feature.histogram is not None:
        row["histogram"] = dataclasses.asdict(feature.histogram)
    return {name: plain(value) for name, value in row.items()}


def _outliers(
    frame: pd.DataFrame, data: pd.DataFrame, reference: LoadedReference
) -> list[dict[str, Any]]:
    detector = reference.detector
    if detector is None or data.empty:
        return []
    scores = detector.score(data)
    flagged = np.flatnonzero(scores.is_outlier)
    if not len(flagged):
        return []
    request_ids = frame["request_id"].to_numpy()
    row_indexes = frame["row_index"].to_numpy()
    times = frame["time"]
    return [
        {
            "request_id": str(request_ids[i]),
            "row_index": int(row_indexes[i]),
            "time": times.iloc[i].to_pydatetime(),
            "score": plain(scores.scores[i]),
            "threshold": plain(scores.threshold),
            "method": detector.method,
            "contributions": plain(dict(zip(scores.columns, scores.contributions[i], strict=True))),
        }
        for i in flagged
    ]


def evaluate(
    frame: pd.DataFrame, reference: LoadedReference, detection: ModelDetection
) -> Evaluation:
    """`frame`: the window's instances as the store reads them (key columns first)."""
    data = frame.drop(columns=[c for c in INSTANCE_KEY_COLUMNS if c in frame.columns])
    report = compare(reference.sketch, data, detection.drift)
    multivariate = report.multivariate
    rows = WindowReport(
        instances=len(frame),
        dataset_drift=bool(report.dataset_drift),
        share=float(report.share),
        drifted=int(report.drifted),
        valid=int(report.valid),
        drift_share=float(report.drift_share),
        correction=str(report.correction),
        multivariate=None if multivariate is None else plain(dataclasses.asdict(multivariate)),
        features=[feature_row(feature) for feature in report.features],
        outliers=_outliers(frame, data, reference),
    )
    return Evaluation(report, rows)
