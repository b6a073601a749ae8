"""A consumer batch in the service: cut at its row budget, and every record that fails on
the way (making its rows, writing them) dead-lettered alone while the rest are stored."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prometheus_client import CollectorRegistry

from infermon import events
from monitor.metrics import MonitorMetrics
from monitor.service import DecodedBatch, MonitorService
from monitor.settings import MonitorSettings
from monitor.store.records import StoredEvent
from monitor.store.store import Store
from tests.fixtures.broker import read_topic
from tests.fixtures.factories import TopicFactory
from tests.monitor.test_decode import FakeMessage

MAX_EVENT_BYTES = 100_000


def request(call: int, rows: int = 1) -> FakeMessage:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"), ("ce_id", f"call-{call}".encode()), ("ce_source", b"/s"),
        ("ce_type", events.KSERVE_REQUEST_TYPE.encode()), ("ce_time", b"2026-11-29T08:00:00Z"),
        ("content-type", b"application/json"),
    ]  # fmt: skip
    body = json.dumps({"instances": [[n] for n in range(rows)]}).encode()
    return FakeMessage(body, headers, offset_number=call)


def test_a_batch_ends_at_the_record_that_brings_its_rows_to_the_budget() -> None:
    messages = [request(call, rows=2) for call in range(5)]
    batch = DecodedBatch.of(messages, MAX_EVENT_BYTES, max_rows=10, max_batch_rows=5)
    assert batch.records == 3
    assert [event.offset for event in batch.events] == [0, 1, 2]
    assert batch.next_offsets == {("payloads", 2): 3}
    rest = DecodedBatch.of(messages[3:], MAX_EVENT_BYTES, max_rows=10, max_batch_rows=5)
    assert (rest.records, rest.next_offsets) == (2, {("payloads", 2): 5})


def test_a_batch_ends_before_the_record_that_would_bring_its_bytes_above_the_budget() -> None:
    messages = [request(call) for call in range(5)]
    size = len(messages[0].value_bytes or b"")
    batch = DecodedBatch.of(messages, MAX_EVENT_BYTES, max_batch_bytes=2 * size)
    assert (batch.records, [event.offset for event in batch.events]) == (2, [0, 1])
    alone = DecodedBatch.of(messages, MAX_EVENT_BYTES, max_batch_bytes=size // 2)
    assert alone.records == 1, "a record above the budget is a batch of its own"


def test_an_event_whose_rows_cannot_be_made_is_dead_lettered_alone(store: Store) -> None:
    """A time in year 1 an hour east of UTC has no UTC equivalent: decode refuses it, and
    if one got past, the batch would still store its neighbours."""
    batch = DecodedBatch.of([request(call) for call in range(3)], MAX_EVENT_BYTES)
    year_one = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    middle = batch.events[1]
    assert isinstance(middle, StoredEvent)
    batch.events[1] = replace(middle, time=year_one)
    batch.prepare(store)
    assert [event.offset for event in batch.events] == [0, 2]
    [letter] = batch.dead_letters
    assert (letter.offset, letter.stage, letter.error_class) == (1, "prepare", "OverflowError")
    result = store.write_prepared(batch.prepared)
    assert (result.events_new, result.dead_letters) == (2, 1)


def test_a_write_that_fails_on_one_event_for_any_reason_stores_the_others(
    tmp_path: Path, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """An offset beyond 64 bits: SQLite's driver raises OverflowError, not a database
    error. The batch is written again event by event; that one is dead-lettered."""
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    topic = new_topic()
    settings = MonitorSettings(kafka_bootstrap=kafka_bootstrap, database_url=url,
                               topic=topic, dlq_topic=f"{topic}.dlq")  # fmt: skip
    messages = [request(0), request(2**70), request(2)]
    with Store(url) as store:
        store.upgrade()
        metrics = MonitorMetrics(CollectorRegistry())
        service = MonitorService(settings, store, metrics)
        batch = DecodedBatch.of(messages, MAX_EVENT_BYTES)
        batch.prepare(store)
        service._writer.submit(batch)
        service._finish_in_flight()  # before, the OverflowError was raised here
        stats = store.stats()
        service._close()
    assert stats["events"] == 2
    assert metrics.dead_lettered._value.get() == 1
    [copy] = read_topic(kafka_bootstrap, f"{topic}.dlq", 1, timeout_s=20)
    headers = dict(copy.headers())
    assert headers["__connect.errors.stage"] == b"store"
    assert headers["__connect.errors.offset"] == str(2**70).encode()
