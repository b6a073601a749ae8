"""Kafka to database through `infermon monitor`, beside both limits, in one run.

Pre-produces logged calls (request + response events, 2-row v1 batches) to the embedded
broker, then times: a bare consumer reading them all (the consume limit); the same records'
rows bulk-inserted into bare tables (the database's limit); one monitor process storing
them (SQLite, then PostgreSQL); two monitor processes in one group storing them. Each
monitor run is timed from its first stored event, by the monitors' own counters.

    python bench/monitor_throughput.py [--calls 50000] [--partitions 4]
        [--databases sqlite,postgresql] [--processes 1,2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from common import REPO_ROOT, cpu_seconds
from confluent_kafka import Consumer, Producer, TopicPartition
from monitor_store import bare_insert_rate, postgresql_database

from infermon import events
from monitor.service import DecodedBatch
from monitor.store.rows import BatchRows
from monitor.store.store import Store
from tests.fixtures.broker import TansuBroker, create_topic
from tests.fixtures.processes import ServerProcess, free_port, http_ok
from tests.fixtures.prometheus import scrape

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


# `infermon monitor` with the compiled one pass switched off, for an A/B run (monitor_ab.py).
PYTHON_ONLY = (
    "import sys; import monitor.one_pass as one_pass; one_pass.one_pass_rows = None; "
    "from infermon.cli import main; sys.exit(main())"
)


def start_monitor(
    bootstrap: str,
    topic: str,
    database_url: str,
    group: str,
    extra: tuple[str, ...] = (),
    tree: Path = REPO_ROOT,
    python_only: bool = False,
) -> tuple[ServerProcess, str]:
    """A monitor process from the source tree `tree`, and the address of its metrics page;
    `python_only`: without the compiled one pass, every batch decoded record by record."""
    admin_port = free_port()
    start = ["-c", PYTHON_ONLY] if python_only else ["-m", "infermon.cli"]
    argv = [sys.executable, *start, "monitor", "--kafka-bootstrap", bootstrap,
            "--topic", topic, "--group", group, "--database-url", database_url,
            "--admin-host", "127.0.0.1", "--admin-port", str(admin_port),
            "--session-timeout-ms", "6000",
            "--kafka-config", "max.poll.interval.ms=30000", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = ServerProcess("bench-monitor", argv, cwd=tree, env=env)
    ready = f"http://127.0.0.1:{admin_port}/readyz"
    process.wait_until(lambda: http_ok(ready), 30, "readiness")
    return process, f"http://127.0.0.1:{admin_port}/metrics"


def stored_by_each(metrics_urls: list[str]) -> list[int]:
    """Events each monitor stored, from its own counter: far cheaper than counting rows,
    which on SQLite scans the table and would take CPU from the run being measured."""
    return [int(scrape(url)["infermon_monitor_events_stored_total"]) for url in metrics_urls]


def stored_events(metrics_urls: list[str]) -> int:
    return sum(stored_by_each(metrics_urls))


def backend_pids(database_url: str) -> list[int]:
    """The PostgreSQL server processes serving a database (none for SQLite)."""
    if not database_url.startswith("postgresql"):
        return []
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        ).fetchall()
    return [pid for (pid,) in rows]


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend that ended
            total += cpu_seconds(pid)
    return total


def monitor_rate(
    bootstrap: str,
    topic: str,
    database_url: str,
    processes: int,
    expected: int,
    extra: tuple[str, ...] = (),
    tree: Path = REPO_ROOT,
    python_only: bool = False,
) -> tuple[float, float, float, tuple[float, ...]]:
    """(events/s, the monitor processes' and the database server's CPU µs per event, over
    the timed span; each process's share of the events stored), monitors from `tree`."""
    with Store(database_url) as store:
        store.upgrade()
    group = f"bench-{uuid.uuid4().hex[:8]}"
    started_monitors = [
        start_monitor(bootstrap, topic, database_url, group, extra, tree, python_only)
        for _ in range(processes)
    ]
    monitors = [monitor for monitor, _ in started_monitors]
    metrics = [url for _, url in started_monitors]
    try:
        # Timed from the first stored event, so group joins and start-up do not count.
        while (first := stored_events(metrics)) == 0:
            time.sleep(0.02)
        started = time.perf_counter()
        backends = backend_pids(database_url)
        cpu_started = cpu_of([m.pid for m in monitors]), cpu_of(backends)
        while (count := stored_events(metrics)) < expected:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu = cpu_of([m.pid for m in monitors]) - cpu_started[0]
        server = cpu_of(backends) - cpu_started[1]
        stored = count - first
        shares = tuple(n / count for n in stored_by_each(metrics))
        return stored / elapsed, cpu / stored * 1e6, server / stored * 1e6, shares
    finally:
        for monitor in monitors:
            monitor.stop()


def database_url(kind: str, folder: Path, name: str) -> contextlib.AbstractContextManager[str]:
    """A new SQLite file, or a new PostgreSQL database dropped once measured (~60 MB each)."""
    if kind == "sqlite":
        return contextlib.nullcontext(f"sqlite:///{folder / f'{name}.db'}")
    return postgresql_database(POSTGRES_ADMIN_DSN)


def bulk_insert_rate(bootstrap: str, topic: str, partitions: int, kind: str, folder: Path) -> float:
    """The same records, decoded and merged, bulk-inserted into bare tables (no keys, no
    indexes): the database's own limit for these rows (monitor_store.bare_insert_rate)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bulk-{uuid.uuid4()}",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    with database_url(kind, folder, "bulk") as url, Store(url) as store:
        store.upgrade()
        batches: list[BatchRows] = []
        events = 0
        while messages := [m for m in consumer.consume(5000, timeout=2) if m.error() is None]:
            decoded = DecodedBatch.of(messages, max_event_bytes=10 * 1024 * 1024)
            batches += store.prepare(decoded.events).parts
            events += len(decoded.events)
        consumer.close()
        return bare_insert_rate(store, batches, events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list")
    parser.add_argument("--processes", default="1,2", help="comma list of monitor counts")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; medians shown")
    args = parser.parse_args()
    with TansuBroker() as broker, tempfile.TemporaryDirectory() as folder:
        topic = "bench.payloads"
        create_topic(broker.bootstrap, topic, partitions=args.partitions)
        expected = produce_calls(broker.bootstrap, topic, args.calls)
        raw = raw_consume_rate(broker.bootstrap, topic, args.partitions, expected)
        print(f"{expected:,} events (2-row v1 batches) in {args.partitions} partitions; "
              f"medians of {args.rounds} rounds")  # fmt: skip
        print(f"raw consume (bare confluent-kafka consumer): {raw:>9,.0f} events/s")
        for kind in args.databases.split(","):
            bulk = bulk_insert_rate(broker.bootstrap, topic, args.partitions, kind, Path(folder))
            print(f"{kind:>10}, bulk insert of the same rows into bare tables: "
                  f"{bulk:>9,.0f} events/s")  # fmt: skip
            for processes in map(int, args.processes.split(",")):
                runs = []
                for round_number in range(args.rounds):
                    name = f"{kind}-{processes}-{round_number}"
                    with database_url(kind, Path(folder), name) as url:
                        runs.append(monitor_rate(broker.bootstrap, topic, url, processes, expected))
                rate, cpu, server = (statistics.median(run[i] for run in runs) for i in range(3))
                spread = ", ".join(f"{run[0]:,.0f}" for run in runs)
                if processes > 1:
                    spread += "; shares " + ", ".join(
                        "/".join(f"{share:.0%}" for share in run[3]) for run in runs
                    )
                print(f"{kind:>10}, {processes} monitor process(es): {rate:>9,.0f} events/s "
                      f"({rate / raw:.2f}x raw consume, {rate / bulk:.2f}x bulk insert; "
                      f"runs {spread}); CPU per event: monitor {cpu:.1f} us"
                      + (f", PostgreSQL {server:.1f} us" if server else ""))  # fmt: skip


if __name__ == "__main__":
    main()
