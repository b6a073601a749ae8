"""`infermon monitor` keeps storing around every record that cannot be stored as it is:
real broker, the real process, SQLite and PostgreSQL.

Each poison record is sent between two good calls in one batch: the good calls are stored,
the poison is in the error table and on the dead-letter topic, and the monitor is still
running and storing what comes after.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Producer

from infermon import events
from infermon.dead_letters import (
    HEADER_ORIGINAL_BYTES,
    HEADER_ORIGINAL_SHA256,
    HEADER_VALUE_CUT_TO,
)
from monitor.store.store import Store
from tests.fixtures.broker import read_topic
from tests.fixtures.factories import TopicFactory
from tests.monitor.consumer_helpers import MonitorProcess, start_monitor

Record = tuple[bytes | None, list[tuple[str, bytes | None]], bytes | None]
# Lets the test's producer write records above librdkafka's default limit of 1,000,000 bytes.
BIG_PRODUCER = {"message.max.bytes": 12_000_000}
# A monitor's peak RSS with nothing to store is ~155 MB, ~180 MB where Python compiles its
# modules at start (no bytecode cache: PYTHONDONTWRITEBYTECODE). Exploding the payloads below
# whole would take it to ~850 MB; held to their bounds they add a few tens of MB.
MAX_PEAK_MB = 250


def call_records(call_id: str, time: bytes = b"2026-11-29T07:01:02.5Z") -> list[Record]:
    """A call as a KafkaSink writes it: the request and the response, binary mode."""
    records: list[Record] = []
    for event_type, body in (
        (events.KSERVE_REQUEST_TYPE, {"instances": [[1, 2]]}),
        (events.KSERVE_RESPONSE_TYPE, {"predictions": [3]}),
    ):
        headers: list[tuple[str, bytes | None]] = [
            ("ce_specversion", b"1.0"), ("ce_id", call_id.encode()), ("ce_source", b"/poison"),
            ("ce_type", event_type.encode()), ("ce_time", time),
            ("content-type", b"application/json"), ("ce_modelname", b"poisoned"),
        ]  # fmt: skip
        records.append((call_id.encode(), headers, json.dumps(body).encode()))
    return records


def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **BIG_PRODUCER})
    for key, headers, value in records:
        producer.produce(topic, value, key, headers=headers)
    assert producer.flush(30) == 0


@dataclass(frozen=True)
class Poison:
    record: Record
    flags: tuple[str, ...] = ()
    error: bytes = b""  # in the dead letter's exception message
    cut: bool = False  # the dead letter's value is cut to fit the dead-letter topic
    headers_dropped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _time_poison(time: bytes) -> Poison:
    request = call_records("bad-time", time)[0]
    return Poison(request, error=b"UTC")


STRUCTURED_YEAR_ONE = json.dumps({
    "specversion": "1.0", "id": "structured", "source": "/poison",
    "type": events.KSERVE_REQUEST_TYPE, "time": "0001-01-01T00:00:00+01:00",
    "datacontenttype": "application/json", "data": {"instances": [[1]]},
}).encode()  # fmt: skip

POISONS: dict[str, Poison] = {
    "binary time before year 1 in UTC": _time_poison(b"0001-01-01T00:00:00+01:00"),
    "binary time after year 9999 in UTC": _time_poison(b"9999-12-31T23:59:59-01:00"),
    "structured time before year 1 in UTC": Poison(
        (b"s", [("content-type", b"application/cloudevents+json")], STRUCTURED_YEAR_ONE),
        error=b"UTC",
    ),
    "not a CloudEvent, 1.5 MB": Poison(
        (b"junk", [("content-type", b"text/plain")], b"j" * 1_500_000), cut=True
    ),
    "a CloudEvent above --max-event-bytes, 2 MB": Poison(
        (b"big", call_records("big")[0][1], b'{"instances": [["' + b"y" * 2_000_000 + b'"]]}'),
        flags=("--max-event-bytes", "1500000"),
        error=b"above 1500000",
        cut=True,
    ),
    "not a CloudEvent, a 1.2 MB header": Poison(
        (b"header", [("x-huge", b"h" * 1_200_000)], b"small"), headers_dropped=True
    ),
}


def wait_storing(
    monitor: MonitorProcess, store: Store, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The store's stats once `done(stats)`; fails at once, with the log, if the monitor exits."""
    deadline = time.monotonic() + 60
    stats = store.stats()
    while not done(stats):
        assert monitor.running(), f"the monitor exited:\n{monitor.log_tail()}"
        assert time.monotonic() < deadline, f"stuck at {stats}:\n{monitor.log_tail()}"
        time.sleep(0.3)
        stats = store.stats()
    return stats


@pytest.mark.parametrize("name", POISONS)
def test_good_events_around_a_poison_record_are_stored_and_the_monitor_goes_on(
    name: str, kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    poison = POISONS[name]
    topic = new_topic()
    produce(kafka_bootstrap, topic, [*call_records("before"), poison.record,
                                     *call_records("after")])  # fmt: skip
    monitor = start_monitor(kafka_bootstrap, topic, database_url, *poison.flags)
    try:
        stats = wait_storing(monitor, store, lambda s: s["events"] >= 4 and s["dead_letters"] >= 1)
        assert (stats["events"], stats["inferences"], stats["dead_letters"]) == (4, 2, 1)
        produce(kafka_bootstrap, topic, call_records("later"))
        stats = wait_storing(monitor, store, lambda s: s["events"] >= 6)
        assert (stats["events"], stats["inferences"], stats["dead_letters"]) == (6, 3, 1)
        assert monitor.running()
    finally:
        monitor.stop()
    [letter] = read_topic(kafka_bootstrap, f"{topic}.dlq", 1, timeout_s=20)
    headers = dict(letter.headers())
    assert headers["__connect.errors.offset"] == b"2"
    assert poison.error in headers["__connect.errors.exception.message"]
    key, original_headers, value = poison.record
    assert letter.key() == key
    original = value or b""
    if poison.cut:
        assert len(letter.value()) < len(original)
        assert original.startswith(letter.value())
        assert headers[HEADER_VALUE_CUT_TO] == str(len(letter.value())).encode()
        assert headers[HEADER_ORIGINAL_BYTES] == str(len(original)).encode()
        assert headers[HEADER_ORIGINAL_SHA256] == hashlib.sha256(original).hexdigest().encode()
    else:
        assert letter.value() == original
    if poison.headers_dropped:
        assert "x-huge" not in headers
    else:
        assert all(headers[name] == raw for name, raw in original_headers)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def _store_huge_payload(
    bootstrap: str, topic: str, database_url: str, store: Store, huge: bytes
) -> tuple[dict[str, Any], float]:
    """`huge` as a request between two calls; the store's stats once all five events are
    stored, and the monitor's peak RSS in MB meanwhile."""
    key, headers, _ = call_records("huge")[0]
    produce(bootstrap, topic, [*call_records("before"), (key, headers, huge),
                               *call_records("after")])  # fmt: skip
    # The consumer's own bound: without detection (scipy and the detectors, ~60 MB more).
    monitor = start_monitor(bootstrap, topic, database_url, "--no-detection")
    try:
        stats = wait_storing(monitor, store, lambda s: s["events"] >= 5)
        peak_mb = peak_rss_mb(monitor.process.pid)
        assert monitor.running()
    finally:
        monitor.stop()
    assert (stats["events"], stats["inferences"], stats["dead_letters"]) == (5, 3, 0)
    by_id = {call.request_id: call for call in store.latest_inferences(limit=10)}
    assert not by_id["before"].orphaned and not by_id["after"].orphaned
    return stats, peak_mb


def _huge_event_row(store: Store) -> tuple[str | None, int]:
    with store.engine.connect() as connection:
        [(reason, payload_bytes)] = connection.exec_driver_sql(
            "SELECT parse_error, payload_bytes FROM events WHERE event_id = 'huge'"
        ).all()
    return reason, payload_bytes


def test_a_payload_of_a_million_instances_is_stored_in_bounded_memory(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    """5 MB of one-value instances would be ~850 MB exploded: at most 10,000 are, the rest
    counted; the events around it are stored, and the monitor stays under MAX_PEAK_MB."""
    instances = 1_250_000
    huge = b'{"instances": [' + b",".join([b"[1]"] * instances) + b"]}"
    assert len(huge) > 5_000_000
    stats, peak_mb = _store_huge_payload(kafka_bootstrap, new_topic(), database_url, store, huge)
    assert peak_mb < MAX_PEAK_MB, f"peak RSS {peak_mb:.0f} MB"
    assert stats["instances"] == 1 + 10_000 + 1
    [call] = [call for call in store.latest_inferences(limit=10) if call.request_id == "huge"]
    assert call.request_rows == instances, "the payload's own count"
    assert call.request_payload_kind == "v1"
    reason, payload_bytes = _huge_event_row(store)
    assert reason is not None and f"{instances - 10_000} rows not exploded" in reason
    assert payload_bytes == len(huge), "the raw payload is kept whole"


def test_a_large_v2_payload_is_kept_raw_in_bounded_memory(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    """A v2 tensor's rows are not a top-level array, so a 5 MB one cannot be cut before it
    is parsed (~110 MB parsed): it is kept raw, with the reason."""
    rows = 1_250_000
    data = b",".join([b"[1]"] * rows)
    huge = (b'{"inputs": [{"name": "x", "datatype": "INT64", "shape": [%d, 1], "data": [%s]}]}'
            % (rows, data))  # fmt: skip
    stats, peak_mb = _store_huge_payload(kafka_bootstrap, new_topic(), database_url, store, huge)
    assert peak_mb < MAX_PEAK_MB, f"peak RSS {peak_mb:.0f} MB"
    assert stats["instances"] == 2
    [call] = [call for call in store.latest_inferences(limit=10) if call.request_id == "huge"]
    assert (call.request_payload_kind, call.request_rows) == ("raw", None)
    reason, payload_bytes = _huge_event_row(store)
    assert reason is not None and f"payload of {len(huge)} bytes" in reason
    assert payload_bytes == len(huge)
