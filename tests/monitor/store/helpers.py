"""Building StoredEvents for store tests, and reading whole tables back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from monitor.store.records import EventKind, StoredEvent
from monitor.store.schema import metadata
from monitor.store.store import Store
from tests.fixtures.processes import free_port

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SOURCE = "http://localhost:9081/"
KSERVE_REQUEST = "org.kubeflow.serving.inference.request"
KSERVE_RESPONSE = "org.kubeflow.serving.inference.response"
# Rows as monitor.payloads explodes a KServe v1 call.
IRIS_ROWS = [
    {"f0": 6.8, "f1": 2.8, "f2": 4.8, "f3": 1.4},
    {"f0": 6.0, "f1": 3.4, "f2": 4.5, "f3": 1.6},
]
IRIS_PREDICTIONS = [{"prediction": 1}, {"prediction": 2}]
_offsets = iter(range(1_000_000))


def event(
    kind: EventKind,
    request_id: str,
    rows: list[dict[str, Any]] | None,
    *,
    time: datetime | None = T0,
    model: str | None = "iris",
    event_type: str | None = None,
    event_id: str | None = None,
    **fields: Any,
) -> StoredEvent:
    """A KServe-style event: the request id is the event id unless told otherwise."""
    event_type = event_type or {"request": KSERVE_REQUEST, "response": KSERVE_RESPONSE}.get(
        kind, "org.kubeflow.serving.inference.feedback"
    )
    attributes = {"id": event_id or request_id, "source": SOURCE, "type": event_type}
    if time is not None:
        attributes["time"] = time.isoformat()
    return StoredEvent(
        source=SOURCE,
        event_id=event_id or request_id,
        type=event_type,
        kind=kind,
        request_id=request_id,
        time=time,
        attributes={**attributes, "specversion": "1.0", "modelname": model or ""},
        content_type="application/json",
        payload=b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}',
        topic="infermon.payloads",
        partition=0,
        offset=next(_offsets),
        model=model,
        namespace="default",
        inference_service=model,
        component="predictor",
        protocol="v1",
        payload_kind="v1" if rows is not None else "raw",
        rows=rows,
        **fields,
    )


def request(
    request_id: str, rows: list[dict[str, Any]] | None = IRIS_ROWS, **kw: Any
) -> StoredEvent:
    return event("request", request_id, rows, **kw)


def response(
    request_id: str,
    rows: list[dict[str, Any]] | None = IRIS_PREDICTIONS,
    *,
    time: datetime | None = T0 + timedelta(milliseconds=7),
    status_code: int | None = 200,
    **kw: Any,
) -> StoredEvent:
    return event("response", request_id, rows, time=time, status_code=status_code, **kw)


def call(request_id: str, at: datetime = T0, **kw: Any) -> tuple[StoredEvent, StoredEvent]:
    """A request and its response 7 ms later, each as the logger would send them."""
    return (
        request(request_id, time=at, **kw),
        response(request_id, time=at + timedelta(milliseconds=7), **kw),
    )


def redelivered(stored: StoredEvent) -> StoredEvent:
    """The same event read again from Kafka at another offset (a producer retry)."""
    return replace(stored, offset=stored.offset + 100_000)


def table_rows(store: Store, table_name: str) -> list[dict[str, Any]]:
    """Every row of a table, in primary key order."""
    table = metadata.tables[table_name]
    query = select(table).order_by(*table.primary_key.columns)
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def all_tables(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {name: table_rows(store, name) for name in metadata.tables}


def without(rows: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in names} for row in rows]


def unreachable_postgresql_url() -> str:
    """A PostgreSQL URL on a port where nothing listens."""
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/infermon"
