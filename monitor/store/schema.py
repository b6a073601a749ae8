"""The store's tables, as SQLAlchemy Core. Migrations 0001 to 0004 create exactly these.

- `events`: every CloudEvent once, whole, keyed by (source, event_id, type): KServe gives a
  call's request and response the same id, so the type is part of the key.
- `inferences`: one row per request id, merged from its request and response in any order.
- `instances`: one row per batch row of an inference: the request's features beside the
  response's prediction, paired by row index.
- `dead_letters`: Kafka records that were not valid CloudEvents, keyed by where they were.
- Drift detection (migration 0002): `drift_references`, `drift_windows` (claimed by one monitor
  of the group, then done), `drift_reports` (one per window revision), `drift_features` and
  `outliers`.
- From the dashboard (migration 0003): `feedback`, the ground truth of instances; and in
  `drift_references`, references set by a user, stored as data and summarised by the monitor.
- Migration 0004: a partial index of the calls answered with an error (the dashboard's
  traffic counts them per time bucket from it).

`time` in events, inferences and instances is never NULL, so that it can be indexed and
sorted: the CloudEvent's time (for an inference and its instances, the request's, else the
response's), or the time it was stored when the event carries none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

# Explicit constraint names keep migrations identical on PostgreSQL and SQLite.
metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is UTC:  # the usual case; astimezone would build a copy
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def sqlite_time_text(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores; fixed width, so it sorts like the time."""
    if moment.tzinfo is not UTC:
        moment = as_utc(moment)
    return moment.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: timestamptz on PostgreSQL, UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return as_utc(value).replace(tzinfo=None)
        return as_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


events = Table(
    "events",
    metadata,
    Column("source", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("type", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # request, response or other
    Column("request_id", Text, nullable=False),
    Column("model", Text),
    Column("time", UtcDateTime, nullable=False),  # ce time, else stored_at
    Column("stored_at", UtcDateTime, nullable=False),
    Column("content_type", Text),
    Column("attributes", JSON, nullable=False),  # every CloudEvent attribute, as text
    Column("payload", LargeBinary, nullable=False),
    Column("payload_bytes", Integer, nullable=False),
    Column("payload_kind", Text, nullable=False),
    Column("parse_error", Text),
    Column("truncated", Boolean, nullable=False),
    Column("kafka_topic", Text, nullable=False),
    Column("kafka_partition", Integer, nullable=False),
    Column("kafka_offset", BigInteger, nullable=False),
    Index("ix_events_request_id", "request_id"),  # an inference's payloads
    # Retention. Events arrive in about time order, so on PostgreSQL a BRIN index (a few
    # pages, near-free to keep up) finds the old ones; SQLite has only B-trees.
    Index("ix_events_time", "time", postgresql_using="brin"),
)

inferences = Table(
    "inferences",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("model", Text),
    Column("namespace", Text),
    Column("inference_service", Text),
    Column("component", Text),
    Column("protocol", Text),
    Column("time", UtcDateTime, nullable=False),  # request time, else response time
    Column("request_time", UtcDateTime),
    Column("response_time", UtcDateTime),
    Column("latency_ms", Float),  # the response's latencyms, else response - request time
    Column("status_code", Integer),
    Column("batch_size", Integer),  # request_rows, else response_rows
    Column("request_rows", Integer),
    Column("response_rows", Integer),
    Column("batch_size_mismatch", Boolean, nullable=False),
    Column("has_request", Boolean, nullable=False),
    Column("has_response", Boolean, nullable=False),
    Column("orphaned", Boolean, nullable=False),  # a request whose response never came
    Column("request_payload_kind", Text),
    Column("response_payload_kind", Text),
    Index("ix_inferences_time", "time"),  # all models' latest; retention
)
Index("ix_inferences_model_time", inferences.c.model, inferences.c.time.desc())
# Errors only (a few per cent of calls): a bucket's error count reads just these entries. A
# query uses it only when it spells the condition the same way: `ANSWERED_WITH_ERROR`.
ANSWERED_WITH_ERROR = "status_code >= 400"
Index(
    "ix_inferences_model_errors",
    inferences.c.model,
    inferences.c.time,
    sqlite_where=text(ANSWERED_WITH_ERROR),
    postgresql_where=text(ANSWERED_WITH_ERROR),
)
# Only requests still waiting for their response: keeps the orphan sweep cheap.
AWAITING_RESPONSE = "has_request AND NOT has_response AND NOT orphaned"
Index(
    "ix_inferences_awaiting_response",
    inferences.c.time,
    postgresql_where=text(AWAITING_RESPONSE),
    sqlite_where=text(AWAITING_RESPONSE),
)

instances = Table(
    "instances",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("row_index", Integer, primary_key=True),
    Column("model", Text),
    Column("time", UtcDateTime, nullable=False),  # request time, else response time
    Column("features", JSON),  # the request's row, a JSON object
    Column("prediction", JSON),  # the response's row, a JSON object
)
Index("ix_instances_model_time", instances.c.model, instances.c.time.desc())

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("kafka_topic", Text, primary_key=True),
    Column("kafka_partition", Integer, primary_key=True),
    Column("kafka_offset", BigInteger, primary_key=True),
    Column("key", LargeBinary),
    Column("value", LargeBinary),
    # [{"name": ..., "text": ...} or {"name": ..., "base64": ...} or {"name": ..., "text": null}]
    Column("headers", JSON, nullable=False),
    Column("error", Text, nullable=False),
    Column("error_class", Text, nullable=False),
    Column("stage", Text, nullable=False),
    Column("stored_at", UtcDateTime, nullable=False),
    Index("ix_dead_letters_stored_at", "stored_at"),
)

# Drift detection (migration 0002). An instance key is (time, request_id, row_index): the
# order in which a model's instances are taken into count windows.

# A model's reference, summarised once; windows compare with the newest version.
drift_references = Table(
    "drift_references",
    metadata,
    Column("model", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("source", Text, nullable=False),  # "first 1000", "file PATH", "range START END"
    Column("created_at", UtcDateTime, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("columns", JSON, nullable=False),  # the reference's column names, in order
    # ReferenceSketch.to_bytes; NULL: pending, set from the dashboard and not summarised yet.
    Column("sketch", LargeBinary),
    # "monitor": built from the detection config; "dashboard": uploaded or pinned by a user.
    Column("origin", Text, nullable=False, server_default="monitor"),
    Column("data", LargeBinary),  # a user's reference: its rows as Parquet, until summarised
    Column("outlier_detector", LargeBinary),  # OutlierDetector.to_bytes; NULL: none
    # The stored instances it came from (first N, a time range): inclusive key range.
    Column("first_time", UtcDateTime),
    Column("first_request_id", Text),
    Column("first_row_index", Integer),
    Column("last_time", UtcDateTime),
    Column("last_request_id", Text),
    Column("last_row_index", Integer),
)

# One row per window of a model, claimed by one monitor of the group, then done.
drift_windows = Table(
    "drift_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),  # count windows 1, 2, ...; time windows: slot
    Column("kind", Text, nullable=False),  # count, tumbling or sliding
    Column("window_start", UtcDateTime, nullable=False),  # time windows: [start, end)
    Column("window_end", UtcDateTime, nullable=False),  # count windows: first and last time
    # Instances strictly after this key (count windows: the previous window's end; time
    # windows: the reference's last instance, if it came from stored data).
    Column("after_time", UtcDateTime),
    Column("after_request_id", Text),
    Column("after_row_index", Integer),
    # Count windows: up to this key, inclusive.
    Column("end_time", UtcDateTime),
    Column("end_request_id", Text),
    Column("end_row_index", Integer),
    Column("state", Text, nullable=False),  # claimed or done
    Column("claimed_by", Text, nullable=False),  # the claim: monitor id and claim number
    Column("lease_until", UtcDateTime, nullable=False),
    Column("revision", Integer, nullable=False),  # of the report being made, or last made
    Column("instances", Integer),  # in the last report
    Column("late", Integer),  # of those, how many came after the first report
    Column("reference_version", Integer, nullable=False),
    Column("done_at", UtcDateTime),
    UniqueConstraint("model", "seq", name="uq_drift_windows_model_seq"),
)
# The evaluator's look-ups: claims to take over, done windows to recount for late data.
Index("ix_drift_windows_state_lease", drift_windows.c.state, drift_windows.c.lease_until)
Index("ix_drift_windows_done_at", drift_windows.c.done_at)

# One report per window revision.
drift_reports = Table(
    "drift_reports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("window_id", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("window_start", UtcDateTime, nullable=False),
    Column("window_end", UtcDateTime, nullable=False),
    Column("instances", Integer, nullable=False),
    Column("reference_version", Integer, nullable=False),
    Column("dataset_drift", Boolean, nullable=False),
    Column("share", Float, nullable=False),
    Column("drifted", Integer, nullable=False),
    Column("valid", Integer, nullable=False),
    Column("drift_share", Float, nullable=False),  # the share that makes dataset drift
    Column("correction", Text, nullable=False),
    Column("late", Integer, nullable=False),
    Column("outliers", Integer, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
    Column("multivariate", JSON),  # the multivariate test's result; NULL: none
    UniqueConstraint("window_id", "revision", name="uq_drift_reports_window_revision"),
)
# A model's latest report, and its history over time.
Index("ix_drift_reports_model_end", drift_reports.c.model, drift_reports.c.window_end.desc())
Index("ix_drift_reports_computed_at", drift_reports.c.computed_at.desc())

# A report's row per column.
drift_features = Table(
    "drift_features",
    metadata,
    Column("report_id", Integer, primary_key=True),
    Column("position", Integer, primary_key=True),  # the report's column order
    Column("column", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("test", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("statistic", Float),
    Column("p_value", Float),
    Column("distance", Float),
    Column("threshold", Float, nullable=False),
    Column("threshold_source", Text, nullable=False),
    Column("drift", Boolean, nullable=False),
    Column("missing_share", Float, nullable=False),
    Column("reference_missing_share", Float, nullable=False),
    Column("missing_drift", Boolean, nullable=False),
    Column("unseen_categories", Integer, nullable=False),
    Column("histogram", JSON),  # {"labels", "reference", "current"}: the same bins
)

# The instances of a window's report that its outlier detector flagged.
outliers = Table(
    "outliers",
    metadata,
    Column("report_id", Integer, primary_key=True),
    Column("request_id", Text, primary_key=True),
    Column("row_index", Integer, primary_key=True),
    Column("window_id", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("time", UtcDateTime, nullable=False),
    Column("score", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("method", Text, nullable=False),
    Column("contributions", JSON, nullable=False),  # {column: its part of the score}
)
Index("ix_outliers_model_time", outliers.c.model, outliers.c.time.desc())
Index("ix_outliers_window_id", outliers.c.window_id)

# Ground truth from the dashboard (migration 0003): one label per instance, the latest one sent.
# No foreign key: a label may come before its inference, and is joined once that is stored.
feedback = Table(
    "feedback",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("row_index", Integer, primary_key=True),
    Column("label", JSON, nullable=False),  # a class (string or integer) or a number
    Column("received_at", UtcDateTime, nullable=False),
)
