"""A model's reference: where its data comes from, and its summary stored once.

From the model's first N stored instances (the default, N = 1000), from a file (CSV,
Parquet, JSON lines) or from a stored time range. The data is summarised into a drift sketch
and an outlier detector, stored as a reference version; windows compare with it from then on.
A reference set from the dashboard (an upload, or pinned stored instances) is stored as data
(Parquet) with no summary: pending until the monitor summarises it the same way.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from monitor.detection_config import ModelDetection, ReferenceSpec
from monitor.drift.sketch import ReferenceSketch, summarise
from monitor.outliers.detectors import OutlierDetector, fit
from monitor.store.detection_store import DetectionStore
from monitor.store.read import INSTANCE_KEY_COLUMNS
from monitor.store.windows import InstanceKey, InstanceRange, Reference

log = logging.getLogger(__name__)

# A stored time range gives its oldest instances up to this many.
MAX_RANGE_INSTANCES = 100_000


class ReferenceUnavailableError(Exception):
    """The reference cannot be built (a file unreadable, a range with no instance)."""


def reference_source(spec: ReferenceSpec) -> str:
    """What a stored reference says it came from; a new version is made when this changes."""
    if spec.kind == "first":
        return f"first {spec.instances}"
    if spec.kind == "file":
        return f"file {spec.path}"
    start = spec.start.isoformat() if spec.start else ""
    end = spec.end.isoformat() if spec.end else ""
    return f"range {start} {end}"


@dataclass(frozen=True)
class ReferenceData:
    frame: pd.DataFrame  # features and predictions, without the instance keys
    first: InstanceKey | None = None
    last: InstanceKey | None = None


def read_file(path: Path) -> pd.DataFrame:
    """CSV, Parquet or JSON lines, by suffix."""
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path)
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=True)
    except (OSError, ValueError, ImportError) as error:
        raise ReferenceUnavailableError(f"cannot read reference {path}: {error}") from None


def _keys_of(frame: pd.DataFrame, row: int) -> InstanceKey:
    return InstanceKey(
        frame["time"].iloc[row].to_pydatetime(),
        str(frame["request_id"].iloc[row]),
        int(frame["row_index"].iloc[row]),
    )


def _stored(frame: pd.DataFrame) -> ReferenceData:
    return ReferenceData(
        frame.drop(columns=list(INSTANCE_KEY_COLUMNS)), _keys_of(frame, 0), _keys_of(frame, -1)
    )


def reference_data(
    store: DetectionStore, model: str, spec: ReferenceSpec, settled: datetime
) -> ReferenceData | None:
    """The reference's data; None while it is not all stored yet (the first N instances are
    not there, or the newest of them is not older than `settled`; a range not over yet)."""
    if spec.kind == "file":
        if spec.path is None:
            raise ReferenceUnavailableError("a file reference without a path")
        return ReferenceData(read_file(spec.path))
    if spec.kind == "first":
        everything = InstanceRange(model)
        last = store.nth_instance_key(everything, spec.instances)
        if last is None or last.time > settled:
            return None
        return _stored(store.instances(InstanceRange(model, through=last), spec.instances))
    if spec.end is None or spec.end > settled:
        return None
    frame = store.instances(
        InstanceRange(model, start=spec.start, end=spec.end), MAX_RANGE_INSTANCES
    )
    if frame.empty:
        raise ReferenceUnavailableError(f"no stored instance in {reference_source(spec)}")
    return _stored(frame)


def pending_data(store: DetectionStore, reference: Reference) -> ReferenceData:
    """The rows of a reference set from the dashboard, which stored them as Parquet."""
    data = store.reference_data(reference.model, reference.version)
    if data is None:
        raise ReferenceUnavailableError(f"reference {reference.version} holds no data")
    try:
        frame = pd.read_parquet(io.BytesIO(data))
    except (OSError, ValueError, ImportError) as error:
        raise ReferenceUnavailableError(
            f"cannot read reference {reference.version}: {error}"
        ) from None
    return ReferenceData(frame, reference.first, reference.last)


def summarised_pending(
    reference: Reference, detection: ModelDetection, data: ReferenceData
) -> Reference:
    """A pending reference with its summary: its version, source and origin kept."""
    built = summarised(reference.model, reference.version, detection, data)
    return dataclasses.replace(built, source=reference.source, origin=reference.origin)


def summarised(
    model: str, version: int, detection: ModelDetection, data: ReferenceData
) -> Reference:
    """The reference summarised once: its drift sketch and its outlier detector (none when
    no outlier method is set, or the data has nothing it can score)."""
    window = detection.window
    window_size = window.instances if window.kind == "count" else None
    sketch = summarise(data.frame, detection.drift, window_size)
    detector: OutlierDetector | None = None
    if detection.outliers is not None:
        try:
            detector = fit(data.frame, detection.outliers, detection.outlier_fpr)
        except ValueError as error:  # e.g. no numeric column: drift is still detected
            log.warning("no outlier detector for model %s: %s", model, error)
    return Reference(
        model=model,
        version=version,
        source=reference_source(detection.reference),
        rows=len(data.frame),
        columns=[str(column) for column in data.frame.columns],
        sketch=sketch.to_bytes(),
        outlier_detector=None if detector is None else detector.to_bytes(),
        first=data.first,
        last=data.last,
    )


@dataclass(frozen=True)
class LoadedReference:
    """A stored reference with its sketch and detector read back, ready for windows."""

    stored: Reference
    sketch: ReferenceSketch
    detector: OutlierDetector | None

    @classmethod
    def of(cls, stored: Reference) -> LoadedReference:
        if stored.sketch is None:
            raise ValueError(f"reference {stored.version} of {stored.model!r} is pending")
        detector = stored.outlier_detector
        return cls(
            stored,
            ReferenceSketch.from_bytes(stored.sketch),
            None if detector is None else OutlierDetector.from_bytes(detector),
        )
