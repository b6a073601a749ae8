"""The monitor under faults: SIGKILL at random points, the database going away under load."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from confluent_kafka import Producer
from sqlalchemy.engine import make_url

from infermon import events
from monitor.store.store import Store
from tests.fixtures.broker import unconsumed_records, wait_for_rebalance
from tests.fixtures.factories import TopicFactory
from tests.fixtures.tcp_proxy import CuttableTcpProxy
from tests.monitor.consumer_helpers import (
    MonitorProcess,
    group_of,
    start_monitor,
    wait_for_stats,
)
from tests.monitor.store.helpers import table_rows

pytestmark = pytest.mark.slow


def call_records(call: int) -> list[tuple[bytes, list[tuple[str, bytes]], bytes]]:
    """A logged call as our logger writes it: request and response, keyed by the request id."""
    request_id = f"call-{call}"
    records = []
    for event_type, body in (
        (events.KSERVE_REQUEST_TYPE, {"instances": [[call, 1.5], [call + 1, 2.5]]}),
        (events.KSERVE_RESPONSE_TYPE, {"predictions": [call + 1.5, call + 3.5]}),
    ):
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", request_id.encode()),
            ("ce_source", b"http://localhost:9081/"), ("ce_type", event_type.encode()),
            ("ce_time", b"2026-11-29T07:00:00Z"), ("content-type", b"application/json"),
            ("ce_requestid", request_id.encode()), ("ce_modelname", b"chaos"),
        ]  # fmt: skip
        records.append((request_id.encode(), headers, json.dumps(body).encode()))
    return records


class BackgroundProducer:
    """Writes `calls` logged calls at a steady pace, plus some exact duplicates."""

    def __init__(self, bootstrap: str, topic: str, calls: int, seconds: float) -> None:
        self.produced_ids: set[str] = set()
        self.resent_ids: set[str] = set()  # calls whose two records are on the topic twice
        self._args = (bootstrap, topic, calls, seconds)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        bootstrap, topic, calls, seconds = self._args
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        rng = random.Random(7)
        started = time.monotonic()
        for call in range(calls):
            records = call_records(call)
            if rng.random() < 0.05:
                records += records  # a re-send: same source, id and type
                self.resent_ids.add(f"call-{call}")
            for key, headers, value in records:
                producer.produce(topic, value, key, headers=headers)
            self.produced_ids.add(f"call-{call}")
            producer.poll(0)
            # The pace is the load under test, not a wait for something to happen.
            time.sleep(max(0.0, started + seconds * (call + 1) / calls - time.monotonic()))
        assert producer.flush(30) == 0

    def join(self) -> None:
        self._thread.join(timeout=120)


def wait_until_all_stored(monitor: MonitorProcess, bootstrap: str, topic: str) -> None:
    """Until the group has committed every record of the topic: offsets are committed only
    after the transaction that stored their records, so nothing more can arrive."""
    deadline = time.monotonic() + 60
    while (left := unconsumed_records(bootstrap, group_of(topic), topic)) > 0:
        assert monitor.running(), f"the monitor exited:\n{monitor.log_tail()}"
        assert time.monotonic() < deadline, f"{left} records uncommitted:\n{monitor.log_tail()}"
        time.sleep(0.2)


def expected_instances(call: int) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(row index, features, prediction) of each row of `call_records(call)`."""
    return [
        (0, {"f0": call, "f1": 1.5}, {"prediction": call + 1.5}),
        (1, {"f0": call + 1, "f1": 2.5}, {"prediction": call + 3.5}),
    ]


def assert_each_call_stored_once(store: Store, calls: int) -> None:
    """Call by call, what one delivery of its two events stores. Each table's key holds one
    row per event, call and instance whatever arrives twice, so equal totals cannot show a
    duplicate; what a second delivery could still change is what it merges into those rows:
    row counts counted again, instances numbered on, a pairing undone."""
    ids = [f"call-{call}" for call in range(calls)]
    stored_events = table_rows(store, "events")
    events_per_call = Counter((row["request_id"], row["kind"]) for row in stored_events)
    assert events_per_call == {(i, kind): 1 for i in ids for kind in ("request", "response")}
    inferences = {row["request_id"]: row for row in table_rows(store, "inferences")}
    assert sorted(inferences) == sorted(ids)
    merged = {"request_rows": 2, "response_rows": 2, "batch_size": 2, "has_request": True,
              "has_response": True, "orphaned": False}  # fmt: skip
    for request_id, row in inferences.items():
        assert {name: row[name] for name in merged} == merged, request_id
    instances = defaultdict(list)
    for row in table_rows(store, "instances"):
        instances[row["request_id"]].append((row["row_index"], row["features"], row["prediction"]))
    for call, request_id in enumerate(ids):
        assert instances[request_id] == expected_instances(call), request_id


def test_sigkill_at_random_points_loses_nothing_and_stores_each_call_once(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    topic = new_topic(partitions=3)
    calls = 6000
    producer = BackgroundProducer(kafka_bootstrap, topic, calls, seconds=20)
    rng = random.Random(11)
    for _ in range(3):
        monitor = start_monitor(kafka_bootstrap, topic, database_url)
        # Killed at a random point of its work: once it has stored a random number more events
        # (a batch it wrote but whose offsets it had not committed is read again by the next).
        target = min(store.stats()["events"] + rng.randint(500, 3500), 2 * calls)
        wait_for_stats(
            store, lambda s, target=target: s["events"] >= target, timeout_s=120, writer=monitor
        )
        monitor.kill(signal.SIGKILL)
    producer.join()
    monitor = start_monitor(kafka_bootstrap, topic, database_url)
    try:
        wait_until_all_stored(monitor, kafka_bootstrap, topic)
        stats = store.stats()
    finally:
        monitor.stop()
    assert producer.resent_ids, "some calls were on the topic twice"
    assert stats["events"] == 2 * calls, "each distinct event stored once"
    assert stats["inferences"] == calls
    assert stats["instances"] == 2 * calls
    assert stats["orphans"] == 0
    assert stats["dead_letters"] == 0
    assert_each_call_stored_once(store, calls)


def _outage(database_url: str) -> tuple[str, CuttableTcpProxy | sqlite3.Connection]:
    """A URL the monitor uses, and a context that makes the database unavailable meanwhile."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        proxy = CuttableTcpProxy(url.host or "127.0.0.1", url.port or 5432)
        through_proxy = url.set(host="127.0.0.1", port=proxy.port)
        return through_proxy.render_as_string(hide_password=False), proxy
    return database_url, sqlite3.connect(url.database or "", timeout=1, isolation_level=None)


def _wait_for_write_retries(monitor: MonitorProcess) -> None:
    """The outage lasts until the monitor has failed to write twice and is retrying."""
    monitor.wait_for_metrics(
        lambda metrics: metrics.get("infermon_monitor_write_retries_total", 0) >= 2,
        timeout_s=60,
        what="retrying writes during the outage",
    )


def test_database_stopped_and_started_under_load_loses_nothing(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    topic = new_topic(partitions=2)
    monitor_url, outage = _outage(database_url)
    monitor = start_monitor(kafka_bootstrap, topic, monitor_url)
    try:
        producer = BackgroundProducer(kafka_bootstrap, topic, 3000, seconds=15)
        # Storing under load.
        wait_for_stats(store, lambda s: s["events"] >= 500, timeout_s=60, writer=monitor)
        if isinstance(outage, CuttableTcpProxy):
            outage.cut()
            _wait_for_write_retries(monitor)
            outage.restore()
        else:  # SQLite: another process holds the write lock longer than the busy timeout
            outage.execute("BEGIN EXCLUSIVE")
            _wait_for_write_retries(monitor)
            outage.execute("ROLLBACK")
        producer.join()
        stats = wait_for_stats(store, lambda s: s["events"] >= 6000, timeout_s=120, writer=monitor)
        assert monitor.running(), "the consumer survived the outage"
    finally:
        monitor.stop()
        outage.close()
    assert stats["events"] == 6000
    assert stats["instances"] == 6000


def test_monitors_joining_and_leaving_a_group_under_load_store_every_event_once(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    """Partitions move between members while batches are being written (on PostgreSQL in
    the background): each member stores what it wrote before letting a partition go.
    (On tansu the second member is assigned partitions only once the first has left; a
    Kafka broker shares them out as soon as it joins. Either way nothing may be lost.)"""
    topic = new_topic(partitions=4)
    calls = 4000
    producer = BackgroundProducer(kafka_bootstrap, topic, calls, seconds=16)
    first = start_monitor(kafka_bootstrap, topic, database_url)
    wait_for_stats(store, lambda s: s["events"] >= 1500, timeout_s=60, writer=first)
    second = start_monitor(kafka_bootstrap, topic, database_url)  # partitions are shared out
    wait_for_rebalance(kafka_bootstrap, group_of(topic))  # the second has joined
    # Two members, under load: the first leaves while batches are being written.
    target = min(store.stats()["events"] + 500, 2 * calls)
    wait_for_stats(store, lambda s: s["events"] >= target, timeout_s=60, writer=second)
    first.stop()  # and its partitions go to the second
    producer.join()
    try:
        wait_until_all_stored(second, kafka_bootstrap, topic)
        stats = store.stats()
    finally:
        second.stop()
    assert stats["events"] == 2 * calls
    assert stats["inferences"] == calls
    assert stats["instances"] == 2 * calls
    assert stats["dead_letters"] == 0
    assert_each_call_stored_once(store, calls)
