"""What the dashboard's API reads: models at a glance, pages of a model's inferences, one
inference whole, drift history bounds. Like `read`, it imports only SQLAlchemy and the schema
(and the read modules below it), and every query finds its rows through an index:

- a model's list: one probe of ix_inferences_model_time per model (a loose index scan);
- counts: `count_rows` over a time range of ix_*_model_time, so that a caller may count a
  model's old rows once and only the new ones after (`dashboards.counts`);
- first and last seen: the two ends of ix_inferences_model_time;
- recent calls, inference pages: ix_inferences_model_time, newest first, keyset pagination.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Table, and_, func, inspect, or_, select
from sqlalchemy.engine import Connection

from monitor.store.read import InferenceSummary
from monitor.store.schema import drift_reports, events, inferences, instances

CountedTable = Literal["inferences", "instances"]
_COUNTED: dict[str, Table] = {"inferences": inferences, "instances": instances}
_SUMMARY_COLUMNS = [inferences.c[field.name] for field in fields(InferenceSummary)]


def ping(connection: Connection) -> None:
    """Raises unless the database answers and holds the store's tables."""
    connection.execute(select(inferences.c.request_id).limit(1)).all()


def has_store_tables(connection: Connection) -> bool:
    """The monitor's tables are there (`infermon db upgrade` has run)."""
    return bool(inspect(connection).has_table(inferences.name))


# One index probe per model, not a scan of every call.
_MODELS = """
WITH RECURSIVE models(model) AS (
    SELECT min(model) FROM inferences
    UNION ALL
    SELECT (SELECT min(model) FROM inferences WHERE inferences.model > models.model)
    FROM models WHERE models.model IS NOT NULL
)
SELECT model FROM models WHERE model IS NOT NULL"""


def model_names(connection: Connection) -> list[str]:
    """Every model with a stored call, in name order (calls without a model name are left out)."""
    return [str(model) for model in connection.exec_driver_sql(_MODELS).scalars()]


def model_exists(connection: Connection, model: str) -> bool:
    """The model has a stored call or a drift report."""
    for column in (inferences.c.model, drift_reports.c.model):
        if connection.execute(select(column).where(column == model).limit(1)).first():
            return True
    return False


def count_rows(
    connection: Connection,
    table: CountedTable,
    model: str,
    after: datetime | None = None,
    through: datetime | None = None,
) -> int:
    """The model's rows of `table` with times in (after, through]."""
    rows = _COUNTED[table]
    query = select(func.count()).select_from(rows).where(rows.c.model == model)
    if after is not None:
        query = query.where(rows.c.time > after)
    if through is not None:
        query = query.where(rows.c.time <= through)
    return int(connection.scalar(query) or 0)


def newest_time(connection: Connection, table: CountedTable, model: str) -> datetime | None:
    rows = _COUNTED[table]
    query = select(rows.c.time).where(rows.c.model == model).order_by(rows.c.time.desc())
    found: datetime | None = connection.scalar(query.limit(1))
    return found


def first_seen(connection: Connection, model: str) -> datetime | None:
    # Not min() beside max(): SQLite takes one aggregate from an index, not two.
    query = select(inferences.c.time).where(inferences.c.model == model)
    found: datetime | None = connection.scalar(query.order_by(inferences.c.time).limit(1))
    return found


@dataclass(frozen=True, slots=True)
class RecentCalls:
    """A model's newest calls: their latencies (ms; None without one) and status codes."""

    since: datetime | None  # the oldest call's time
    latencies_ms: list[float | None]
    status_codes: list[int | None]


# Raw rows: SQLAlchemy's per-row result processing would cost more than the query itself.
_RECENT_CALLS = (
    "SELECT latency_ms, status_code FROM inferences WHERE model = {0} ORDER BY time DESC LIMIT {0}"
)


def recent_calls(connection: Connection, model: str, limit: int) -> RecentCalls:
    marker = "%s" if connection.dialect.name == "postgresql" else "?"
    rows = connection.exec_driver_sql(_RECENT_CALLS.format(marker), (model, limit)).all()
    if not rows:
        return RecentCalls(None, [], [])
    oldest = (
        select(inferences.c.time)
        .where(inferences.c.model == model)
        .order_by(inferences.c.time.desc())
        .offset(len(rows) - 1)
        .limit(1)
    )
    latencies, statuses = zip(*rows, strict=True)
    return RecentCalls(connection.scalar(oldest), list(latencies), list(statuses))


@dataclass(frozen=True, slots=True)
class InferenceFilter:
    """Which of a model's calls a page shows: times in [since, until), status codes in
    [status_low, status_high]."""

    since: datetime | None = None
    until: datetime | None = None
    status_low: int | None = None
    status_high: int | None = None


def inference_page(
    connection: Connection,
    model: str,
    where: InferenceFilter,
    limit: int,
    before: tuple[datetime, str] | None = None,
) -> list[InferenceSummary]:
    """The model's calls newest first, (time, request_id) descending, strictly after the
    `before` key in that order: keyset pagination, so a page never repeats or skips a call
    because newer ones arrived."""
    query = select(*_SUMMARY_COLUMNS).where(inferences.c.model == model)
    if where.since is not None:
        query = query.where(inferences.c.time >= where.since)
    if where.until is not None:
        query = query.where(inferences.c.time < where.until)
    if where.status_low is not None:
        query = query.where(inferences.c.status_code >= where.status_low)
    if where.status_high is not None:
        query = query.where(inferences.c.status_code <= where.status_high)
    if before is not None:
        time, request_id = before
        # `time <= ?` first, so that the index's range starts at the key.
        query = query.where(
            inferences.c.time <= time,
            or_(
                inferences.c.time < time,
                and_(inferences.c.time == time, inferences.c.request_id < request_id),
            ),
        )
    query = query.order_by(inferences.c.time.desc(), inferences.c.request_id.desc()).limit(limit)
    return [InferenceSummary.from_row(row) for row in connection.execute(query)]


def inference(connection: Connection, request_id: str) -> InferenceSummary | None:
    query = select(*_SUMMARY_COLUMNS).where(inferences.c.request_id == request_id)
    row = connection.execute(query).first()
    return None if row is None else InferenceSummary.from_row(row)


_EVENT_COLUMNS = [c for c in events.c if not c.name.startswith("kafka_")]


def inference_events(connection: Connection, request_id: str) -> list[dict[str, Any]]:
    """The call's stored CloudEvents, request first: every column but where it was on Kafka."""
    query = (
        select(*_EVENT_COLUMNS)
        .where(events.c.request_id == request_id)
        .order_by(events.c.kind.desc(), events.c.time, events.c.source, events.c.type)
    )
    return [dict(row._mapping) for row in connection.execute(query)]


def inference_instances(connection: Connection, request_id: str) -> list[dict[str, Any]]:
    """The call's instances in row order: row_index, time, features, prediction."""
    query = (
        select(
            instances.c.row_index, instances.c.time, instances.c.features, instances.c.prediction
        )
        .where(instances.c.request_id == request_id)
        .order_by(instances.c.row_index)
    )
    return [dict(row._mapping) for row in connection.execute(query)]


def nth_latest_window_end(
    connection: Connection, model: str, n: int, until: datetime | None = None
) -> datetime | None:
    """The end of the model's `n`th newest reported window ending before `until` (None if it
    has fewer): the `since` that gives a history of its last `n` windows."""
    query = select(drift_reports.c.window_id, drift_reports.c.window_end).where(
        drift_reports.c.model == model
    )
    if until is not None:
        query = query.where(drift_reports.c.window_end < until)
    windows = query.distinct().order_by(drift_reports.c.window_end.desc()).limit(1).offset(n - 1)
    row = connection.execute(windows).first()
    return None if row is None else row[1]
