"""What detectors and dashboards read from the store: instances as frames, inference pages, counts.

The two hot reads skip SQLAlchemy's per-row processing: a detector asks for 10,000 instances
at a time and must get them in well under 150 ms (BENCHMARKS.md), so times come back as
numbers or fixed-width text and the JSON of all rows is parsed in a single `json.loads`.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.engine import Connection

from monitor.store.schema import (
    as_utc,
    dead_letters,
    events,
    inferences,
    instances,
    sqlite_time_text,
)
from monitor.store.windows import InstanceKey, InstanceRange

# Columns of every latest_instances frame, before the features and predictions.
INSTANCE_KEY_COLUMNS = ("request_id", "row_index", "time")
PREDICTION = "prediction"
PREDICTION_PREFIX = "prediction."
FEATURE_PREFIX = "features."  # only for a feature whose name another column has
UNKNOWN_MODEL = ""  # the models key in stats() for calls with no model name

_ORDER = "ORDER BY time DESC, request_id DESC, row_index LIMIT"
_LATEST_INSTANCES = {
    # Times as integer microseconds since the epoch: far cheaper to turn into a column.
    "postgresql": "SELECT request_id, row_index, (EXTRACT(EPOCH FROM time) * 1000000)::int8,"
    f" features::text, prediction::text FROM instances WHERE model = %s {_ORDER} %s",
    "sqlite": "SELECT request_id, row_index, time, features, prediction"
    f" FROM instances WHERE model = ? {_ORDER} ?",
}
_SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True, slots=True)
class InferenceSummary:
    """One call as stored: its request and response merged."""

    request_id: str
    model: str | None
    namespace: str | None
    inference_service: str | None
    component: str | None
    protocol: str | None
    time: datetime  # the request's time, else the response's
    request_time: datetime | None
    response_time: datetime | None
    latency_ms: float | None
    status_code: int | None
    batch_size: int | None
    request_rows: int | None
    response_rows: int | None
    batch_size_mismatch: bool
    has_request: bool
    has_response: bool
    orphaned: bool
    request_payload_kind: str | None
    response_payload_kind: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> InferenceSummary:
        return cls(**row._mapping)


_SUMMARY_COLUMNS = [inferences.c[field.name] for field in fields(InferenceSummary)]


def latest_inferences(
    connection: Connection,
    limit: int,
    model: str | None,
    before: datetime | None,
    before_request_id: str | None,
) -> list[InferenceSummary]:
    query = select(*_SUMMARY_COLUMNS)
    if model is not None:
        query = query.where(inferences.c.model == model)
    if before is not None:
        older = inferences.c.time < before
        if before_request_id is not None:
            tie = and_(inferences.c.time == before, inferences.c.request_id < before_request_id)
            older = or_(older, tie)
        query = query.where(older)
    query = query.order_by(inferences.c.time.desc(), inferences.c.request_id.desc()).limit(limit)
    return [InferenceSummary.from_row(row) for row in connection.execute(query)]


def latest_instances(connection: Connection, model: str, limit: int) -> pd.DataFrame:
    """The model's newest `limit` instances, newest call first, its rows in order.

    Columns: request_id, row_index, time (UTC), then one per feature, then one per output of
    the prediction named `prediction.<output>`; an output named `prediction` (KServe v1
    answers) is just `prediction`. A feature whose name is taken by one of those columns
    gets the prefix `features.`. Missing values are NaN or None: an instance whose request
    is not stored yet has no features, and vice versa. (Rows are JSON objects; a value that
    is not one, which this store does not write, would come as a single column.)
    """
    dialect = connection.dialect.name
    with _gc_paused():
        cursor_rows = connection.exec_driver_sql(_LATEST_INSTANCES[dialect], (model, limit)).all()
        if not cursor_rows:
            return pd.DataFrame(columns=list(INSTANCE_KEY_COLUMNS))
        return _instances_frame(dialect, cursor_rows)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Without cyclic GC while 10,000 rows become hundreds of thousands of objects.

    Each allocation burst triggers collections that traverse everything just built: 40-60
    of the ~130 ms of a 10,000-row frame (bench/monitor_store.py). JSON values hold no cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _instances_frame(dialect: str, cursor_rows: Sequence[Any]) -> pd.DataFrame:
    request_ids, row_indexes, times, features, predictions = zip(*cursor_rows, strict=True)
    if dialect == "postgresql":
        time = pd.to_datetime(pd.Series(times, dtype="int64"), unit="us", utc=True)
    else:
        time = pd.to_datetime(pd.Series(times), format=_SQLITE_TIME_FORMAT, utc=True)
    keys = pd.DataFrame({"request_id": request_ids, "row_index": row_indexes, "time": time})
    prediction_frame = _objects_frame(_parse_all(predictions), PREDICTION)
    prediction_frame.columns = [
        name if name == PREDICTION else PREDICTION_PREFIX + name
        for name in prediction_frame.columns
    ]
    taken = {*INSTANCE_KEY_COLUMNS, *prediction_frame.columns}
    feature_frame = _objects_frame(_parse_all(features), "features")
    feature_frame.columns = [
        FEATURE_PREFIX + name if name in taken else name for name in feature_frame.columns
    ]
    return pd.concat([keys, feature_frame, prediction_frame], axis=1)


def _parse_all(texts: tuple[str | None, ...]) -> list[Any]:
    """JSON texts (or NULLs) to values with one parser call, not one per row."""
    values: list[Any] = json.loads(
        "[" + ",".join("null" if text is None else text for text in texts) + "]"
    )
    return values


def _objects_frame(values: list[Any], name: str) -> pd.DataFrame:
    """One column per key when every value is an object (or missing); else one column."""
    present = [value for value in values if value is not None]
    if not all(isinstance(value, dict) for value in present):
        return pd.DataFrame({name: values})
    if not present:
        return pd.DataFrame(index=range(len(values)))
    columns = list(present[0])
    if len(present) == len(values) and all(list(value) == columns for value in present):
        # Usual case, every row with the same keys in the same order: no per-key lookups.
        return pd.DataFrame([list(value.values()) for value in values], columns=columns)
    return pd.DataFrame.from_records([value or {} for value in values])


def stats(connection: Connection) -> dict[str, Any]:
    def count(table: Any, *where: Any) -> int:
        return int(connection.scalar(select(func.count()).select_from(table).where(*where)) or 0)

    models: dict[str, dict[str, int]] = {}
    for table in (inferences, instances):
        per_model = select(table.c.model, func.count()).group_by(table.c.model)
        for model, rows in connection.execute(per_model):
            entry = models.setdefault(model or UNKNOWN_MODEL, {"inferences": 0, "instances": 0})
            entry[table.name] += int(rows)
    return {
        "events": count(events),
        "inferences": count(inferences),
        "instances": count(instances),
        "orphans": count(inferences, inferences.c.orphaned),
        "batch_size_mismatches": count(inferences, inferences.c.batch_size_mismatch),
        "dead_letters": count(dead_letters),
        "models": dict(sorted(models.items())),
    }


# Drift windows take a model's instances in key order: (time, request_id, row_index).
_KEY_ORDER = "ORDER BY time, request_id, row_index"
_INSTANCE_COLUMNS = {
    "postgresql": "request_id, row_index, (EXTRACT(EPOCH FROM time) * 1000000)::int8,"
    " features::text, prediction::text",
    "sqlite": "request_id, row_index, time, features, prediction",
}


def _range_where(dialect: str, where: InstanceRange) -> tuple[str, list[Any]]:
    """The WHERE clause (with "?" markers) and its parameters. The time bounds come first so
    that both databases find the range in ix_instances_model_time."""
    time_value = sqlite_time_text if dialect == "sqlite" else as_utc
    clauses: list[str] = ["model = ?"]
    parameters: list[Any] = [where.model]
    if where.after is not None:
        t, r, i = time_value(where.after.time), where.after.request_id, where.after.row_index
        clauses.append(
            "time >= ? AND (time > ? OR request_id > ? OR (request_id = ? AND row_index > ?))"
        )
        parameters += [t, t, r, r, i]
    if where.through is not None:
        t, r, i = time_value(where.through.time), where.through.request_id, where.through.row_index
        clauses.append(
            "time <= ? AND (time < ? OR request_id < ? OR (request_id = ? AND row_index <= ?))"
        )
        parameters += [t, t, r, r, i]
    if where.start is not None:
        clauses.append("time >= ?")
        parameters.append(time_value(where.start))
    if where.end is not None:
        clauses.append("time < ?")
        parameters.append(time_value(where.end))
    return " AND ".join(clauses), parameters


def _run(connection: Connection, statement: str, parameters: list[Any]) -> Any:
    if connection.dialect.name == "postgresql":
        statement = statement.replace("?", "%s")
    return connection.exec_driver_sql(statement, tuple(parameters))


def instances_in(
    connection: Connection, where: InstanceRange, limit: int | None = None
) -> pd.DataFrame:
    """The instances of `where`, oldest first in key order: columns as `latest_instances`."""
    dialect = connection.dialect.name
    clause, parameters = _range_where(dialect, where)
    statement = f"SELECT {_INSTANCE_COLUMNS[dialect]} FROM instances WHERE {clause} {_KEY_ORDER}"
    if limit is not None:
        statement += " LIMIT ?"
        parameters.append(limit)
    with _gc_paused():
        cursor_rows = _run(connection, statement, parameters).all()
        if not cursor_rows:
            return pd.DataFrame(columns=list(INSTANCE_KEY_COLUMNS))
        return _instances_frame(dialect, cursor_rows)


def count_instances(connection: Connection, where: InstanceRange) -> int:
    clause, parameters = _range_where(connection.dialect.name, where)
    return int(
        _run(connection, f"SELECT count(*) FROM instances WHERE {clause}", parameters).scalar_one()
    )


def nth_instance_key(connection: Connection, where: InstanceRange, n: int) -> InstanceKey | None:
    """The key of the `n`th instance (from 1) of `where` in key order; None if fewer."""
    clause, parameters = _range_where(connection.dialect.name, where)
    statement = (
        f"SELECT time, request_id, row_index FROM instances WHERE {clause} {_KEY_ORDER}"
        " LIMIT 1 OFFSET ?"
    )
    row = _run(connection, statement, [*parameters, n - 1]).first()
    if row is None:
        return None
    moment = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
    return InstanceKey(as_utc(moment), row[1], row[2])


# One index probe per model (a loose index scan), not a scan of every instance.
_MODELS = """
WITH RECURSIVE models(model) AS (
    SELECT min(model) FROM instances
    UNION ALL
    SELECT (SELECT min(model) FROM instances WHERE instances.model > models.model)
    FROM models WHERE models.model IS NOT NULL
)
SELECT model FROM models WHERE model IS NOT NULL"""


def models_with_instances(connection: Connection) -> list[str]:
    return [str(model) for model in connection.exec_driver_sql(_MODELS).scalars()]
