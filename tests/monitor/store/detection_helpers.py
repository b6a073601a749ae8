"""Instances, claims and reports for the drift detection store tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from monitor.store.detection_store import DetectionStore
from monitor.store.schema import instances
from monitor.store.store import Store
from monitor.store.windows import Claim, InstanceKey, WindowBounds, WindowReport
from tests.monitor.store.helpers import T0


def add_instances(
    store: Store, model: str, keys: list[tuple[datetime, str, int]], **features: float
) -> None:
    """Instance rows written straight into the table (as merged calls leave them)."""
    rows = [
        {"request_id": request_id, "row_index": row_index, "model": model, "time": time,
         "features": {"x": float(n), **features}, "prediction": {"prediction": n % 2}}
        for n, (time, request_id, row_index) in enumerate(keys)
    ]  # fmt: skip
    with store.write_transaction() as connection:
        connection.execute(insert(instances), rows)


def one_per_second(
    count: int, start: int = 0, prefix: str = "r"
) -> list[tuple[datetime, str, int]]:
    return [
        (T0 + timedelta(seconds=start + n), f"{prefix}{start + n:05d}", 0) for n in range(count)
    ]


def count_bounds(seq: int, after: InstanceKey | None, through: InstanceKey) -> WindowBounds:
    start = through.time if after is None else after.time
    return WindowBounds("count", seq, start, through.time, after=after, through=through)


def report(instances: int, *, drift: bool = False, outliers: list[dict[str, Any]] | None = None
           ) -> WindowReport:  # fmt: skip
    feature = {
        "column": "x", "kind": "numeric", "test": "ks", "status": "ok", "reason": None,
        "statistic": 0.4, "p_value": 0.001 if drift else 0.7, "distance": None,
        "threshold": 0.05, "threshold_source": "default", "drift": drift,
        "missing_share": 0.0, "reference_missing_share": 0.0, "missing_drift": False,
        "unseen_categories": 0,
        "histogram": {"labels": ["(-inf, 1]", "(1, inf)"], "reference": [0.5, 0.5],
                      "current": [0.25, 0.75]},
    }  # fmt: skip
    return WindowReport(
        instances=instances, dataset_drift=drift, share=1.0 if drift else 0.0,
        drifted=int(drift), valid=1, drift_share=0.5, correction="bonferroni",
        multivariate=None, features=[feature], outliers=outliers or [],
    )  # fmt: skip


def claim_first(detection: DetectionStore, model: str, through: InstanceKey, *,
                claimer: str = "a#1", lease_s: float = 30.0) -> Claim:  # fmt: skip
    claim = detection.claim_new(model, count_bounds(1, None, through), 1, claimer, lease_s)
    assert claim is not None
    return claim
