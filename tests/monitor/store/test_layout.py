"""The rows' layout and the call-merge rules, declared once (`layout`): rows land in their
columns by name, and the SQL generated from the merge rules and the Python merge of a batch
agree on every column, on SQLite and PostgreSQL.

A call's request and response merged in Python (both in one batch, in either order) must give
the very row the SQL upsert gives (one after the other, in either order, with an orphan sweep
between): each generated call varies every field on each side, known or not.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from monitor.store import write
from monitor.store.layout import (
    DEAD_LETTER_COLUMNS,
    EVENT_COLUMNS,
    INFERENCE_COLUMNS,
    INSTANCE_COLUMNS,
    MERGES,
    ROW_COLUMNS,
    Merge,
)
from monitor.store.records import StoredEvent
from monitor.store.schema import metadata
from monitor.store.store import Store
from tests.monitor.store.helpers import T0, event, table_rows

CALLS = 40
DESCRIPTION = ("model", "namespace", "inference_service", "component", "protocol")


def _rows(rng: random.Random, side: str) -> list[dict[str, Any]] | None:
    count = rng.choice([None, 0, 1, 2, 3])
    return None if count is None else [{side: rng.randint(0, 9), "row": n} for n in range(count)]


def _call(rng: random.Random, number: int) -> tuple[StoredEvent, StoredEvent]:
    """A request and its response that differ in, or lack, any field of the inference."""
    sides = []
    request_time = T0 + timedelta(seconds=number, microseconds=rng.randint(0, 999_999))
    response_offsets = [7_000, -3_000, 1_234_567, 1]  # µs; a response may claim to be earlier
    for kind, time in (
        ("request", request_time),
        ("response", request_time + timedelta(microseconds=rng.choice(response_offsets))),
    ):
        rows = _rows(rng, kind)
        described = {name: rng.choice([f"{name}-{kind}", None]) for name in DESCRIPTION}
        sides.append(
            replace(
                event(kind, f"call-{number}", rows, time=time),  # type: ignore[arg-type]
                **described,
                status_code=rng.choice([None, 200, 503]),
                latency_ms=rng.choice([None, 5.5, 12.25]),
                rows_not_exploded=rng.choice([0, 0, 4]) if rows is not None else 0,
            )
        )
    return sides[0], sides[1]


def _with_id(stored: StoredEvent, request_id: str) -> StoredEvent:
    return replace(stored, request_id=request_id, event_id=request_id)


Arrival = Callable[[Store, list[StoredEvent], list[StoredEvent]], None]


def _one_batch(store: Store, requests: list[StoredEvent], responses: list[StoredEvent]) -> None:
    store.write([e for pair in zip(requests, responses, strict=True) for e in pair])


def _one_batch_response_first(
    store: Store, requests: list[StoredEvent], responses: list[StoredEvent]
) -> None:
    store.write([e for pair in zip(responses, requests, strict=True) for e in pair])


def _request_first(store: Store, requests: list[StoredEvent], responses: list[StoredEvent]) -> None:
    store.write(requests)
    store.write(responses)


def _response_first(
    store: Store, requests: list[StoredEvent], responses: list[StoredEvent]
) -> None:
    store.write(responses)
    store.write(requests)


def _request_orphaned_then_response(
    store: Store, requests: list[StoredEvent], responses: list[StoredEvent]
) -> None:
    store.write(requests)
    assert store.mark_orphans(older_than=T0 + timedelta(days=1)) == len(requests)
    store.write(responses)


# The first merges in Python only; the others in SQL, the second side meeting a stored row.
ARRIVALS: dict[str, Arrival] = {
    "one-batch": _one_batch,
    "one-batch-response-first": _one_batch_response_first,
    "request-first": _request_first,
    "response-first": _response_first,
    "request-orphaned-then-response": _request_orphaned_then_response,
}


def test_python_and_sql_merge_every_column_alike(store: Store) -> None:
    rng = random.Random(13)
    calls = [_call(rng, number) for number in range(CALLS)]
    for arrival_name, arrival in ARRIVALS.items():
        ids = [f"{arrival_name}/{number}" for number in range(CALLS)]
        arrival(
            store,
            [_with_id(request, i) for i, (request, _) in zip(ids, calls, strict=True)],
            [_with_id(response, i) for i, (_, response) in zip(ids, calls, strict=True)],
        )

    for table in MERGES:
        by_arrival: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        for row in table_rows(store, table):
            arrival_name, number = row.pop("request_id").split("/")
            key = (int(number), row.get("row_index"))
            by_arrival.setdefault(arrival_name, {})[key] = row
        python_merged = by_arrival["one-batch"]
        assert len(python_merged) >= CALLS if table == "inferences" else len(python_merged) > 0
        for arrival_name, rows in by_arrival.items():
            assert rows.keys() == python_merged.keys(), (table, arrival_name)
            for key, row in rows.items():
                differing = {c: (row[c], python_merged[key][c]) for c in row
                             if row[c] != python_merged[key][c]}  # fmt: skip
                assert not differing, (table, arrival_name, key, differing)
        _assert_every_merged_column_varies(table, list(python_merged.values()))


def _assert_every_merged_column_varies(table: str, rows: list[dict[str, Any]]) -> None:
    """The generated calls exercise each column's rule: it takes more than one value (has_*
    are true once both sides came; orphaned is checked by the sweep arrival)."""
    constant_by_design = {Merge.KEY, Merge.EITHER, Merge.UNTIL_RESPONSE}
    for column, rule in MERGES[table].items():
        if rule not in constant_by_design:
            assert len({repr(row[column]) for row in rows}) > 1, (table, column)


def test_the_layout_is_the_schema_and_every_merged_column_has_its_sql() -> None:
    written = ("events", "inferences", "instances", "dead_letters")  # by the consumer
    assert {name: tuple(metadata.tables[name].columns.keys()) for name in written} == ROW_COLUMNS
    assert tuple(ROW_COLUMNS[t] for t in ("events", "inferences", "instances", "dead_letters")) == (
        EVENT_COLUMNS,
        INFERENCE_COLUMNS,
        INSTANCE_COLUMNS,
        DEAD_LETTER_COLUMNS,
    )
    for dialect in ("sqlite", "postgresql"):
        for table, rules in MERGES.items():
            assigned = [
                line.split(" = ", 1)[0] for line in write.merge_sql(dialect, table).split(",\n")
            ]
            assert assigned == [c for c, rule in rules.items() if rule is not Merge.KEY]


@pytest.mark.parametrize("table", list(MERGES))
def test_a_merge_rule_changed_changes_the_sql(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQL follows the declaration: no rule is written into it a second time."""
    column = next(c for c, rule in MERGES[table].items() if rule is Merge.FIRST)
    before = write.merge_sql("sqlite", table)
    monkeypatch.setitem(MERGES[table], column, Merge.REQUEST_FIRST)
    after = write.merge_sql("sqlite", table)
    assert before != after
    assert f"{column} = CASE WHEN excluded." in after


def test_an_event_row_lands_in_its_columns_by_name(store: Store) -> None:
    stored = replace(
        event("request", "by-name", None, model="m"),
        content_type="text/plain", payload=b"12345", payload_kind="raw", parse_error="odd",
        truncated=True, topic="t", partition=3, offset=99,
    )  # fmt: skip
    store.write([stored])

    [row] = table_rows(store, "events")
    assert row.pop("stored_at") >= T0
    assert row == {
        "source": stored.source, "event_id": "by-name", "type": stored.type, "kind": "request",
        "request_id": "by-name", "model": "m", "time": T0, "content_type": "text/plain",
        "attributes": stored.attributes, "payload": b"12345", "payload_bytes": 5,
        "payload_kind": "raw", "parse_error": "odd", "truncated": True, "kafka_topic": "t",
        "kafka_partition": 3, "kafka_offset": 99,
    }  # fmt: skip
