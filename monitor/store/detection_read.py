"""The read side of drift detection: references, windows, reports and outliers.

Like `read`, it imports only SQLAlchemy and the schema, so that the dashboard reads the
reports (latest per model, a model's history, its outliers) without the write path.
Reports come as dicts: the columns of `drift_reports`, and `features`, the report's
`drift_features` rows in the report's column order.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, select
from sqlalchemy.engine import Connection, Result

from monitor.store.schema import (
    drift_features,
    drift_references,
    drift_reports,
    drift_windows,
    outliers,
)
from monitor.store.windows import (
    CLAIMED,
    DONE,
    InstanceKey,
    Reference,
    WindowBounds,
    WindowRow,
)

_FEATURE_COLUMNS = [c for c in drift_features.c if c.name not in ("report_id", "position")]


def _key(row: Row[Any], prefix: str) -> InstanceKey | None:
    mapping = row._mapping
    time = mapping[f"{prefix}_time"]
    if time is None:
        return None
    return InstanceKey(time, mapping[f"{prefix}_request_id"], mapping[f"{prefix}_row_index"])


def _window(row: Row[Any]) -> WindowRow:
    m = row._mapping
    bounds = WindowBounds(
        m["kind"],
        int(m["seq"]),
        m["window_start"],
        m["window_end"],
        _key(row, "after"),
        _key(row, "end"),
    )
    return WindowRow(
        m["id"],
        m["model"],
        bounds,
        m["state"],
        m["claimed_by"],
        m["lease_until"],
        m["revision"],
        m["instances"],
        m["late"],
        m["reference_version"],
    )


# Every column but a user's data (up to an upload's size): read only to summarise it.
_REFERENCE_COLUMNS = [c for c in drift_references.c if c.name != "data"]


def reference(
    connection: Connection, model: str, version: int | None, summarised_only: bool = False
) -> Reference | None:
    """The model's reference of `version`; None: its newest (with `summarised_only`, its
    newest that is not pending)."""
    query = select(*_REFERENCE_COLUMNS).where(drift_references.c.model == model)
    if version is not None:
        query = query.where(drift_references.c.version == version)
    if summarised_only:
        query = query.where(drift_references.c.sketch.is_not(None))
    row = connection.execute(query.order_by(drift_references.c.version.desc()).limit(1)).first()
    if row is None:
        return None
    m = row._mapping
    return Reference(
        m["model"],
        m["version"],
        m["source"],
        m["rows"],
        list(m["columns"]),
        m["sketch"],
        m["outlier_detector"],
        _key(row, "first"),
        _key(row, "last"),
        m["created_at"],
        m["origin"],
    )


def reference_data(connection: Connection, model: str, version: int) -> bytes | None:
    """The rows of a reference set from the dashboard, as Parquet; None for the monitor's."""
    data: bytes | None = connection.scalar(
        select(drift_references.c.data).where(
            drift_references.c.model == model, drift_references.c.version == version
        )
    )
    return data


def last_window(connection: Connection, model: str) -> WindowRow | None:
    """The model's window with the highest seq."""
    row = connection.execute(
        select(drift_windows)
        .where(drift_windows.c.model == model)
        .order_by(drift_windows.c.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else _window(row)


def window(connection: Connection, window_id: int) -> WindowRow | None:
    row = connection.execute(select(drift_windows).where(drift_windows.c.id == window_id)).first()
    return None if row is None else _window(row)


def expired_claims(connection: Connection, now: datetime, limit: int) -> list[WindowRow]:
    """Claimed windows whose claimer let the lease run out (it died, or stalled)."""
    rows = connection.execute(
        select(drift_windows)
        .where(drift_windows.c.state == CLAIMED, drift_windows.c.lease_until < now)
        .order_by(drift_windows.c.lease_until)
        .limit(limit)
    )
    return [_window(row) for row in rows]


def recently_done(connection: Connection, since: datetime, limit: int) -> list[WindowRow]:
    """Windows done since `since`, newest first: those whose instances are recounted."""
    rows = connection.execute(
        select(drift_windows)
        .where(drift_windows.c.state == DONE, drift_windows.c.done_at >= since)
        .order_by(drift_windows.c.done_at.desc())
        .limit(limit)
    )
    return [_window(row) for row in rows]


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """Rows as dicts, the keys taken once: `dict(row._mapping)` builds them per row, which
    cost more than the query for a history of 2,000 feature rows."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


def _with_features(connection: Connection, query: Select[Any]) -> list[dict[str, Any]]:
    return attach_features(connection, _dicts(connection.execute(query)))


def attach_features(connection: Connection, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each report (a `drift_reports` row as a dict) with its `features` rows, in order."""
    if not reports:
        return reports
    features: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = connection.execute(
        select(drift_features.c.report_id, *_FEATURE_COLUMNS)
        .where(drift_features.c.report_id.in_([report["id"] for report in reports]))
        .order_by(drift_features.c.report_id, drift_features.c.position)
    )
    for values in _dicts(rows):
        features[values.pop("report_id")].append(values)
    for report in reports:
        report["features"] = features.get(report["id"], [])
    return reports


def _without_features(connection: Connection, query: Select[Any]) -> list[dict[str, Any]]:
    reports = _dicts(connection.execute(query))
    for report in reports:
        report["features"] = []
    return reports


def reports(
    connection: Connection, model: str | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest `limit` reports (every revision is one), newest window first."""
    query = select(drift_reports)
    if model is not None:
        query = query.where(drift_reports.c.model == model)
    query = query.order_by(drift_reports.c.window_end.desc(), drift_reports.c.id.desc()).limit(
        limit
    )
    return _with_features(connection, query)


def latest_report(connection: Connection, model: str) -> dict[str, Any] | None:
    """The model's newest window's latest revision."""
    found = reports(connection, model, limit=1)
    return found[0] if found else None


def report_history(
    connection: Connection,
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
    feature: str | None = None,
    limit: int | None = None,
    with_features: bool = True,
) -> list[dict[str, Any]]:
    """The model's reports with windows ending in [since, until), oldest first, each
    window's latest revision only; with `feature`, only that feature's row in `features`;
    with `limit`, only the newest `limit` windows (chosen in SQL: the feature rows of older
    windows, histograms and all, are never read); without `with_features`, `features` is
    empty and no feature row is read."""
    in_range = [drift_reports.c.model == model]
    if since is not None:
        in_range.append(drift_reports.c.window_end >= since)
    if until is not None:
        in_range.append(drift_reports.c.window_end < until)
    query = select(drift_reports).where(*in_range)
    if limit is not None:
        newest = (
            select(drift_reports.c.window_id).where(*in_range)
            .group_by(drift_reports.c.window_id)
            .order_by(func.max(drift_reports.c.window_end).desc()).limit(limit)
        )  # fmt: skip
        query = query.where(drift_reports.c.window_id.in_(newest.scalar_subquery()))
    query = query.order_by(drift_reports.c.window_end, drift_reports.c.revision)
    latest: dict[int, dict[str, Any]] = {}
    found = _with_features(connection, query) if with_features else _without_features(
        connection, query)  # fmt: skip
    for report in found:
        latest[report["window_id"]] = report  # later revisions overwrite earlier ones
    history = list(latest.values())
    if feature is not None:
        for report in history:
            report["features"] = [f for f in report["features"] if f["column"] == feature]
    return history


def model_outliers(
    connection: Connection,
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The model's outliers with times in [since, until), newest first."""
    query = select(outliers).where(outliers.c.model == model)
    if since is not None:
        query = query.where(outliers.c.time >= since)
    if until is not None:
        query = query.where(outliers.c.time < until)
    query = query.order_by(outliers.c.time.desc(), outliers.c.request_id, outliers.c.row_index)
    return [dict(row._mapping) for row in connection.execute(query.limit(limit))]


def drift_states(connection: Connection) -> dict[str, dict[str, Any]]:
    """Each model's latest report (without its features), by model."""
    models = connection.scalars(select(drift_reports.c.model).distinct()).all()
    states = {}
    for model in sorted(models):
        row = connection.execute(
            select(drift_reports)
            .where(drift_reports.c.model == model)
            .order_by(drift_reports.c.window_end.desc(), drift_reports.c.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            states[model] = dict(row._mapping)
    return states


def previous_dataset_drift(connection: Connection, model: str, seq: int) -> bool | None:
    """Dataset drift in the latest report of the model's window before `seq`; None if none."""
    row = connection.execute(
        select(drift_reports.c.dataset_drift)
        .join(drift_windows, drift_windows.c.id == drift_reports.c.window_id)
        .where(drift_windows.c.model == model, drift_windows.c.seq < seq)
        .order_by(drift_windows.c.seq.desc(), drift_reports.c.revision.desc())
        .limit(1)
    ).first()
    return None if row is None else bool(row[0])
