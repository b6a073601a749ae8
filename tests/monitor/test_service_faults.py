"""The monitor under faults: SIGKILL at random points, the database going away under load."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time

import pytest
from confluent_kafka import Producer
from sqlalchemy.engine import make_url

from infermon import events
from monitor.store.store import Store
from tests.fixtures.factories import TopicFactory
from tests.fixtures.tcp_proxy import CuttableTcpProxy
from tests.monitor.consumer_helpers import start_monitor, wait_for_stats

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
            for key, headers, value in records:
                producer.produce(topic, value, key, headers=headers)
            self.produced_ids.add(f"call-{call}")
            producer.poll(0)
            time.sleep(max(0.0, started + seconds * (call + 1) / calls - time.monotonic()))
        assert producer.flush(30) == 0

    def join(self) -> None:
        self._thread.join(timeout=120)


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    topic = new_topic(partitions=3)
    calls = 6000
    producer = BackgroundProducer(kafka_bootstrap, topic, calls, seconds=20)
    rng = random.Random(11)
    for _ in range(3):
        monitor = start_monitor(kafka_bootstrap, topic, database_url)
        time.sleep(rng.uniform(1.0, 4.0))
        monitor.kill(signal.SIGKILL)
    producer.join()
    monitor = start_monitor(kafka_bootstrap, topic, database_url)
    try:
        stats = wait_for_stats(store, lambda s: s["events"] >= 2 * calls, timeout_s=120)
        time.sleep(2)  # anything still arriving would be a duplicate: there must be none
        stats = store.stats()
    finally:
        monitor.stop()
    assert stats["events"] == 2 * calls, "each distinct event stored once"
    assert stats["inferences"] == calls
    assert stats["instances"] == 2 * calls
    assert stats["orphans"] == 0
    assert stats["dead_letters"] == 0


def _outage(database_url: str) -> tuple[str, CuttableTcpProxy | sqlite3.Connection]:
    """A URL the monitor uses, and a context that makes the database unavailable meanwhile."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        proxy = CuttableTcpProxy(url.host or "127.0.0.1", url.port or 5432)
        through_proxy = url.set(host="127.0.0.1", port=proxy.port)
        return through_proxy.render_as_string(hide_password=False), proxy
    return database_url, sqlite3.connect(url.database or "", timeout=1, isolation_level=None)


def test_database_stopped_and_started_under_load_loses_nothing(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, store: Store
) -> None:
    topic = new_topic(partitions=2)
    monitor_url, outage = _outage(database_url)
    monitor = start_monitor(kafka_bootstrap, topic, monitor_url)
    try:
        producer = BackgroundProducer(kafka_bootstrap, topic, 3000, seconds=15)
        time.sleep(3)
        if isinstance(outage, CuttableTcpProxy):
            outage.cut()
            time.sleep(8)
            outage.restore()
        else:  # SQLite: another process holds the write lock longer than the busy timeout
            outage.execute("BEGIN EXCLUSIVE")
            time.sleep(12)
            outage.execute("ROLLBACK")
        producer.join()
        stats = wait_for_stats(store, lambda s: s["events"] >= 6000, timeout_s=120)
        assert monitor.running(), "the consumer survived the outage"
        assert monitor.metrics()["infermon_monitor_write_retries_total"] > 0, "it saw the outage"
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
    time.sleep(4)
    second = start_monitor(kafka_bootstrap, topic, database_url)  # partitions are shared out
    time.sleep(6)
    first.stop()  # and handed back to the second
    producer.join()
    try:
        stats = wait_for_stats(store, lambda s: s["events"] >= 2 * calls, timeout_s=120)
        time.sleep(2)
        stats = store.stats()
        assert second.running()
    finally:
        second.stop()
    assert stats["events"] == 2 * calls
    assert stats["inferences"] == calls
    assert stats["instances"] == 2 * calls
    assert stats["dead_letters"] == 0
