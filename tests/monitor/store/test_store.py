"""Store.write on SQLite and PostgreSQL: pairing, idempotence, mismatches, orphans, dead letters."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.store import store as store_module
from monitor.store.records import DeadLetter, StoredEvent
from monitor.store.store import Store, WriteResult
from tests.monitor.store.helpers import (
    IRIS_PREDICTIONS,
    IRIS_ROWS,
    T0,
    all_tables,
    call,
    event,
    redelivered,
    request,
    response,
    table_rows,
    without,
)


def inference(store: Store, request_id: str) -> dict[str, Any]:
    [row] = [r for r in table_rows(store, "inferences") if r["request_id"] == request_id]
    return row


def instances_of(store: Store, request_id: str) -> list[dict[str, Any]]:
    return [r for r in table_rows(store, "instances") if r["request_id"] == request_id]


def test_a_call_is_one_inference_with_one_instance_per_row(store: Store) -> None:
    result = store.write(call("r1", latency_ms=6.5))

    assert result == WriteResult(2, 0, 1, 2, 0)
    row = inference(store, "r1")
    assert row == {
        "request_id": "r1",
        "model": "iris",
        "namespace": "default",
        "inference_service": "iris",
        "component": "predictor",
        "protocol": "v1",
        "time": T0,
        "request_time": T0,
        "response_time": T0 + timedelta(milliseconds=7),
        "latency_ms": 6.5,  # the response's own figure, not the difference of the times
        "status_code": 200,
        "batch_size": 2,
        "request_rows": 2,
        "response_rows": 2,
        "batch_size_mismatch": False,
        "has_request": True,
        "has_response": True,
        "orphaned": False,
        "request_payload_kind": "v1",
        "response_payload_kind": "v1",
    }
    assert [
        (r["row_index"], r["features"], r["prediction"]) for r in instances_of(store, "r1")
    ] == [
        (0, IRIS_ROWS[0], IRIS_PREDICTIONS[0]),
        (1, IRIS_ROWS[1], IRIS_PREDICTIONS[1]),
    ]
    assert [r["time"] for r in instances_of(store, "r1")] == [T0, T0]


def _same_batch(req: StoredEvent, resp: StoredEvent) -> list[list[StoredEvent]]:
    return [[req, resp]]


def _same_batch_response_first(req: StoredEvent, resp: StoredEvent) -> list[list[StoredEvent]]:
    return [[resp, req]]


def _request_then_response(req: StoredEvent, resp: StoredEvent) -> list[list[StoredEvent]]:
    return [[req], [resp]]


def _response_then_request(req: StoredEvent, resp: StoredEvent) -> list[list[StoredEvent]]:
    return [[resp], [req]]


def _everything_twice(req: StoredEvent, resp: StoredEvent) -> list[list[StoredEvent]]:
    return [[resp], [req, redelivered(resp)], [req, resp]]


ARRIVALS: dict[str, Callable[[StoredEvent, StoredEvent], list[list[StoredEvent]]]] = {
    "same-batch": _same_batch,
    "same-batch-response-first": _same_batch_response_first,
    "request-then-response": _request_then_response,
    "response-then-request": _response_then_request,
    "replayed-and-redelivered": _everything_twice,
}


@pytest.mark.parametrize(
    "fields",
    [{"latency_ms": 6.5}, {"latency_ms": None}],
    ids=["latency-from-response", "latency-from-times"],
)
def test_any_arrival_order_and_batching_gives_the_same_rows(
    store: Store, fields: dict[str, Any]
) -> None:
    for name, arrival in ARRIVALS.items():
        req, resp = call(f"call-{name}")
        resp = event("response", resp.request_id, resp.rows, time=resp.time, **fields,
                     status_code=200)  # fmt: skip
        for batch in arrival(req, resp):
            store.write(batch)

    inferences = without(table_rows(store, "inferences"), "request_id")
    instances = without(table_rows(store, "instances"), "request_id")
    assert len(inferences) == len(ARRIVALS)
    assert all(row == inferences[0] for row in inferences), inferences
    assert all(row == instances[r % 2] for r, row in enumerate(instances)), instances
    assert inferences[0]["latency_ms"] == (fields["latency_ms"] or 7.0)
    assert inferences[0]["time"] == T0
    assert instances[0]["time"] == T0, "the request's time, even when the response came first"


def test_latency_from_times_is_exact_to_the_microsecond(store: Store) -> None:
    late = T0 + timedelta(seconds=1, microseconds=123_457)
    store.write([request("together"), response("together", time=late)])
    store.write([response("apart", time=late)])
    store.write([request("apart")])

    assert inference(store, "together")["latency_ms"] == 1123.457
    assert inference(store, "apart")["latency_ms"] == 1123.457


def test_replaying_a_batch_changes_nothing(store: Store) -> None:
    batch = [*call("a"), request("b"), response("c"), *call("d", at=T0 + timedelta(seconds=1))]
    letters = [DeadLetter("infermon.payloads", 0, 99, b"k", b"not an event", error="bad")]
    first = store.write(batch, letters)
    before = all_tables(store)

    replay = store.write(batch, letters)

    assert first.events_new == 6 and first.dead_letters == 1
    assert replay == WriteResult(0, 6, 4, 8, 0)
    assert all_tables(store) == before  # stored_at included: nothing was rewritten


def test_an_event_twice_in_a_batch_is_stored_once(store: Store) -> None:
    req, resp = call("r1")

    result = store.write([req, redelivered(req), resp, redelivered(resp)])

    assert (result.events_new, result.duplicates) == (2, 2)
    assert [row["offset"] for row in _event_offsets(store)] == [req.offset, resp.offset]


def _event_offsets(store: Store) -> list[dict[str, Any]]:
    return [{"offset": row["kafka_offset"]} for row in table_rows(store, "events")]


def test_kserve_request_and_response_share_an_id_and_are_both_kept(store: Store) -> None:
    req, resp = call("shared-id")
    assert (req.source, req.event_id) == (resp.source, resp.event_id)

    store.write([req, resp])

    events = table_rows(store, "events")
    assert [(e["event_id"], e["kind"]) for e in events] == [
        ("shared-id", "request"),
        ("shared-id", "response"),
    ]
    request_event = events[0]
    assert request_event["attributes"] == req.attributes
    assert request_event["payload"] == req.payload
    assert request_event["payload_bytes"] == len(req.payload)
    assert request_event["time"] == T0 and request_event["stored_at"] >= T0
    assert (request_event["kafka_topic"], request_event["kafka_offset"]) == (req.topic, req.offset)


def test_seldon_events_with_their_own_ids_pair_by_request_id(store: Store) -> None:
    seldon_request = request(
        "seldon-call", event_id="uuid-1", event_type="io.seldon.serving.inference.request"
    )
    seldon_response = response(
        "seldon-call", event_id="uuid-2", event_type="io.seldon.serving.inference.response"
    )
    store.write([seldon_response])
    store.write([seldon_request, seldon_response])

    assert [e["event_id"] for e in table_rows(store, "events")] == ["uuid-1", "uuid-2"]
    row = inference(store, "seldon-call")
    assert row["has_request"] and row["has_response"] and row["batch_size"] == 2
    assert [r["prediction"] for r in instances_of(store, "seldon-call")] == IRIS_PREDICTIONS


@pytest.mark.parametrize("together", [True, False], ids=["same-batch", "separate-batches"])
def test_batch_size_mismatch_keeps_rows_by_index_and_flags_the_call(
    store: Store, together: bool
) -> None:
    three_rows = [*IRIS_ROWS, {"f0": 5.0, "f1": 3.0, "f2": 1.6, "f3": 0.2}]
    four_answers = [*IRIS_PREDICTIONS, {"prediction": 0}]
    batches = [
        [request("short-answer", three_rows), response("short-answer")],
        [request("long-answer"), response("long-answer", four_answers[:3])],
    ]
    for batch in batches:
        for part in [batch] if together else [[item] for item in reversed(batch)]:
            store.write(part)

    short, long = inference(store, "short-answer"), inference(store, "long-answer")
    assert (short["request_rows"], short["response_rows"], short["batch_size"]) == (3, 2, 3)
    assert (long["request_rows"], long["response_rows"], long["batch_size"]) == (2, 3, 2)
    assert short["batch_size_mismatch"] and long["batch_size_mismatch"]
    short_rows = instances_of(store, "short-answer")
    assert [(r["features"] is not None, r["prediction"] is not None) for r in short_rows] == [
        (True, True), (True, True), (True, False),
    ]  # fmt: skip
    long_rows = instances_of(store, "long-answer")
    assert [(r["features"] is not None, r["prediction"] is not None) for r in long_rows] == [
        (True, True), (True, True), (False, True),
    ]  # fmt: skip


def test_an_error_response_without_rows_is_no_mismatch(store: Store) -> None:
    store.write([request("failed"), response("failed", None, status_code=500)])

    row = inference(store, "failed")
    assert (row["status_code"], row["response_rows"], row["batch_size_mismatch"]) == (
        500,
        None,
        False,
    )
    assert [r["prediction"] for r in instances_of(store, "failed")] == [None, None]


def test_orphans_are_marked_after_the_timeout_and_cleared_by_a_late_response(store: Store) -> None:
    store.write([request("lost", time=T0), request("recent", time=T0 + timedelta(minutes=10))])
    store.write([*call("answered", at=T0)])

    assert store.mark_orphans(older_than=T0 + timedelta(minutes=5)) == 1
    assert store.mark_orphans(older_than=T0 + timedelta(minutes=5)) == 0
    assert inference(store, "lost")["orphaned"]
    assert not inference(store, "recent")["orphaned"]
    assert store.stats()["orphans"] == 1

    store.write([response("lost", time=T0 + timedelta(minutes=6))])

    assert not inference(store, "lost")["orphaned"]
    assert store.stats()["orphans"] == 0


def test_a_response_with_no_request_is_no_orphan(store: Store) -> None:
    store.write([response("half")])

    assert store.mark_orphans(older_than=T0 + timedelta(days=1)) == 0
    assert inference(store, "half")["time"] == T0 + timedelta(milliseconds=7)


def test_dead_letters_are_stored_once_with_their_headers(store: Store) -> None:
    letter = DeadLetter(
        topic="infermon.payloads",
        partition=1,
        offset=42,
        key=b"key",
        value=b"\xff\xfe not json",
        headers=[("ce_id", b"abc"), ("binary", b"\xff\x00"), ("empty", None)],
        error="missing attribute: source",
        error_class="InvalidEventError",
        stage="decode",
    )
    next_letter = replace(letter, offset=43, headers=[])
    assert store.write([], [letter, next_letter]).dead_letters == 2
    assert store.write([], [letter, next_letter]).dead_letters == 0

    row, _ = table_rows(store, "dead_letters")
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == (
        "infermon.payloads", 1, 42,
    )  # fmt: skip
    assert (row["key"], row["value"]) == (b"key", b"\xff\xfe not json")
    assert row["headers"] == [
        {"name": "ce_id", "text": "abc"},
        {"name": "binary", "base64": "/wA="},
        {"name": "empty", "text": None},
    ]
    assert (row["error"], row["error_class"], row["stage"]) == (
        "missing attribute: source", "InvalidEventError", "decode",
    )  # fmt: skip
    assert store.stats()["dead_letters"] == 2


def test_other_events_are_kept_raw_without_an_inference(store: Store) -> None:
    feedback = event("other", "r1", None)

    assert store.write([feedback]) == WriteResult(1, 0, 0, 0, 0)
    assert [e["kind"] for e in table_rows(store, "events")] == ["other"]
    assert table_rows(store, "inferences") == []


def test_an_event_without_a_time_is_placed_at_its_storing_time(store: Store) -> None:
    store.write([request("timeless", time=None)])

    row = inference(store, "timeless")
    [stored] = table_rows(store, "events")
    assert row["request_time"] is None
    assert row["time"] == stored["time"] == stored["stored_at"]


def test_values_postgresql_would_refuse_are_stored_anyway(store: Store) -> None:
    awkward = request(
        "nul\x00in-id",
        [{"x": math.nan, "y": math.inf, "z": "text\x00with nul"}],
        model="m\x00",
    )

    surrogate = request("lone\ud800surrogate", None)  # "\ud800" in a structured event's JSON

    store.write([awkward, response("nul\x00in-id", None, status_code=10**12), surrogate])

    [row] = table_rows(store, "instances")
    assert row["features"] == {"x": None, "y": None, "z": "text\x00with nul"}
    calls = {r["request_id"]: r for r in table_rows(store, "inferences")}
    assert calls["lone\ufffdsurrogate"]["has_request"]
    assert [r["status_code"] for r in calls.values() if r["has_response"]] == [None]


def test_writing_nothing_touches_nothing(store: Store) -> None:
    assert store.write([]) == WriteResult(0, 0, 0, 0, 0)


def test_a_batch_written_in_sub_batches_is_stored_as_if_whole(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls split across sub-batches merge in SQL exactly as they fold in Python."""
    calls = [event for n in range(5) for event in call(f"call-{n}", latency_ms=None)]
    batch = [calls[0], *calls[2:], calls[1], redelivered(calls[4])]  # a response 9 events late
    with Store(f"sqlite:///{tmp_path / 'whole.db'}") as whole:
        whole.upgrade()
        expected = whole.write(batch)
        expected_tables = all_tables(whole)
    monkeypatch.setattr(store_module, "SUB_BATCH_EVENTS", 3)
    with Store(database_url) as store:
        store.upgrade()

        result = store.write(batch)

        assert result == expected == WriteResult(10, 1, 5, 10, 0)
        tables = all_tables(store)
    for name in ("inferences", "instances"):
        assert tables[name] == expected_tables[name]
    assert without(tables["events"], "stored_at") == without(expected_tables["events"], "stored_at")


def test_two_writers_storing_the_same_batch_at_once(database_url: str, tmp_path: Path) -> None:
    """As after a rebalance, when two consumers briefly hold the same partition."""
    batch = [event for n in range(300) for event in call(f"call-{n}")]
    with Store(f"sqlite:///{tmp_path / 'once.db'}") as reference:
        reference.upgrade()
        reference.write(batch)
        expected = without(table_rows(reference, "instances"), "time")
    with Store(database_url) as first, Store(database_url) as second:
        first.upgrade()
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda store: store.write(batch), [first, second]))

        assert sum(result.events_new for result in results) == 600
        assert without(table_rows(first, "instances"), "time") == expected
        assert first.stats()["inferences"] == 300


def test_two_writers_pairing_the_same_calls_in_opposite_orders(database_url: str) -> None:
    """Seldon's events have no Kafka key: a call's request and response can reach two
    consumers, whose upserts of the same inferences must wait for each other, not deadlock."""
    ids = [f"call-{n:04d}" for n in range(5000)]  # enough to deadlock without key order
    requests = [request(call_id, None) for call_id in ids]
    responses = [response(call_id, None) for call_id in reversed(ids)]
    with Store(database_url) as first, Store(database_url) as second:
        first.upgrade()
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(first.write, requests), pool.submit(second.write, responses)]
            assert [job.result().events_new for job in jobs] == [5000, 5000]

        rows = table_rows(first, "inferences")
        assert len(rows) == 5000 and all(r["has_request"] and r["has_response"] for r in rows)
