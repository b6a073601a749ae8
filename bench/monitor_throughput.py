"""Kafka to database through `infermon monitor`, beside the raw consume rate, in one run.

Pre-produces logged calls (request + response events, 2-row v1 batches) to the embedded
broker, then times: a bare consumer reading them all; one monitor process storing them
(SQLite, then PostgreSQL); two monitor processes in one group storing them.

    python bench/monitor_throughput.py [--calls 50000] [--partitions 4]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from common import REPO_ROOT
from confluent_kafka import Consumer, Producer, TopicPartition

from infermon import events
from monitor.store import Store
from tests.fixtures.broker import TansuBroker, create_topic
from tests.fixtures.processes import ServerProcess, free_port, http_ok

POSTGRES_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def produce_calls(bootstrap: str, topic: str, calls: int) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "compression.type": "lz4",
                         "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    for call in range(calls):
        request_id = f"call-{call}".encode()
        for event_type, body in (
            (events.KSERVE_REQUEST_TYPE,
             {"instances": [[call, 1.5, 2.5, 3.5], [4.5, 5.5, 6.5, call]]}),
            (events.KSERVE_RESPONSE_TYPE, {"predictions": [call + 7.5, call + 16.5]}),
        ):  # fmt: skip
            headers = [
                ("ce_specversion", b"1.0"), ("ce_id", request_id), ("ce_source", b"bench"),
                ("ce_type", event_type.encode()), ("ce_time", b"2026-11-29T08:00:00Z"),
                ("content-type", b"application/json"), ("ce_modelname", b"bench"),
                ("ce_requestid", request_id), ("ce_protocol", b"v1"),
            ]  # fmt: skip
            while True:
                try:
                    producer.produce(topic, json.dumps(body).encode(), request_id, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.01)
    producer.flush(120)
    return 2 * calls


def raw_consume_rate(bootstrap: str, topic: str, partitions: int, expected: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4()}",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    started, seen = time.perf_counter(), 0
    while seen < expected:
        seen += sum(1 for m in consumer.consume(5000, timeout=1) if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    return expected / elapsed


def start_monitor(bootstrap: str, topic: str, database_url: str, group: str) -> ServerProcess:
    admin_port = free_port()
    argv = [sys.executable, "-m", "infermon.cli", "monitor", "--kafka-bootstrap", bootstrap,
            "--topic", topic, "--group", group, "--database-url", database_url,
            "--admin-host", "127.0.0.1", "--admin-port", str(admin_port),
            "--session-timeout-ms", "6000",
            "--kafka-config", "max.poll.interval.ms=30000"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = ServerProcess("bench-monitor", argv, cwd=REPO_ROOT, env=env)
    ready = f"http://127.0.0.1:{admin_port}/readyz"
    process.wait_until(lambda: http_ok(ready), 30, "readiness")
    return process


def monitor_rate(
    bootstrap: str, topic: str, database_url: str, processes: int, expected: int
) -> float:
    store = Store(database_url)
    store.upgrade()
    group = f"bench-{uuid.uuid4().hex[:8]}"
    monitors = [start_monitor(bootstrap, topic, database_url, group) for _ in range(processes)]
    try:
        # Timed from the first stored event, so group joins and start-up do not count.
        while store.stats()["events"] == 0:
            time.sleep(0.05)
        started = time.perf_counter()
        while (count := store.stats()["events"]) < expected:
            time.sleep(0.2)
        return (count) / (time.perf_counter() - started)
    finally:
        for monitor in monitors:
            monitor.stop()
        store.close()


def postgres_url() -> str:
    name = f"infermon_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with TansuBroker() as broker, tempfile.TemporaryDirectory() as folder:
        topic = "bench.payloads"
        create_topic(broker.bootstrap, topic, partitions=args.partitions)
        expected = produce_calls(broker.bootstrap, topic, args.calls)
        raw = raw_consume_rate(broker.bootstrap, topic, args.partitions, expected)
        print(f"{expected:,} events (2-row v1 batches) in {args.partitions} partitions")
        print(f"raw consume (bare confluent-kafka consumer): {raw:>9,.0f} events/s")
        for kind in ("sqlite", "postgresql"):
            for processes in (1, 2):
                url = (f"sqlite:///{Path(folder) / f'{kind}-{processes}.db'}" if kind == "sqlite"
                       else postgres_url())  # fmt: skip
                rate = monitor_rate(broker.bootstrap, topic, url, processes, expected)
                print(f"{kind:>10}, {processes} monitor process(es): {rate:>9,.0f} events/s "
                      f"({rate / raw:.2f}x raw consume)")  # fmt: skip


if __name__ == "__main__":
    main()
