"""The monitor's store: write throughput and the two hot reads, on SQLite and on PostgreSQL.

(a) `Store.write` of KServe v1 calls (a request and a response event, 2 rows each) in batches
    of 5,000 events like the consumer's, into an empty database. Beside it, in the same run,
    the very same rows bulk-inserted into bare tables (same columns; no keys, indexes or
    merging) with executemany (SQLite) or COPY (PostgreSQL): the ratio is what deduplication,
    pairing and indexes cost. Python's and the PostgreSQL backend's CPU per event are shown,
    because on two shared cores the wall-clock rate moves with whatever else runs.
(b) With 1,000,000 instances of one model (20 numeric features) loaded directly (COPY or
    executemany, not through write), `latest_instances(10_000)` and `latest_inferences(50)`,
    median of 5 after a warm-up; beside each, the same SELECT fetched raw (`fetchall`), so the
    ratio is what building the DataFrame or the dataclasses costs.

    python bench/monitor_store.py [--events 200000] [--instances 1000000]
        [--databases sqlite,postgresql] [--postgres "host=127.0.0.1 user=postgres dbname=postgres"]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts the repository on sys.path)
import psycopg
from psycopg import sql
from sqlalchemy import event

from monitor.store import read as store_read
from monitor.store import write as store_write
from monitor.store.layout import INFERENCE_COLUMNS, INSTANCE_COLUMNS, ROW_COLUMNS
from monitor.store.records import StoredEvent
from monitor.store.rows import BatchRows, batch_rows, to_json
from monitor.store.schema import as_utc, sqlite_time_text
from monitor.store.store import Store

BATCH_EVENTS = 5000  # MonitorSettings.batch_max_events
REQUEST_BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
RESPONSE_BODY = b'{"predictions": [1, 2]}'
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
START = datetime(2025, 1, 1, tzinfo=UTC)
READ_MODEL = "bench-model"
FEATURES = 20
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def kserve_call(number: int) -> tuple[StoredEvent, StoredEvent]:
    """A call as monitor.decode makes it from our logger's two events."""
    request_id = str(uuid.UUID(int=number))
    request_time = START + timedelta(microseconds=300 * number)
    response_time = request_time + timedelta(milliseconds=3)
    attributes = {
        "id": request_id, "source": "http://localhost:9081/", "specversion": "1.0",
        "inferenceservicename": "iris", "namespace": "default", "component": "predictor",
        "endpoint": "", "metadata": "{}", "requestid": request_id, "method": "POST",
        "path": "/v1/models/iris:predict", "protocol": "v1", "modelname": "iris",
    }  # fmt: skip
    shared: dict[str, Any] = {
        "source": "http://localhost:9081/", "event_id": request_id, "request_id": request_id,
        "content_type": "application/json", "topic": "infermon.payloads", "partition": 0,
        "model": "iris", "namespace": "default", "inference_service": "iris",
        "component": "predictor", "protocol": "v1", "payload_kind": "v1",
    }  # fmt: skip
    request = StoredEvent(
        **shared, type=REQUEST_TYPE, kind="request", time=request_time, offset=2 * number,
        attributes={**attributes, "type": REQUEST_TYPE, "time": request_time.isoformat(),
                    "recordedtime": request_time.isoformat()},
        payload=REQUEST_BODY,
        rows=[{"f0": 6.8, "f1": 2.8, "f2": 4.8, "f3": 1.4},
              {"f0": 6.0, "f1": 3.4, "f2": 4.5, "f3": 1.6}],
    )  # fmt: skip
    response = StoredEvent(
        **shared, type=RESPONSE_TYPE, kind="response", time=response_time,
        offset=2 * number + 1, status_code=200, latency_ms=3.0,
        attributes={**attributes, "type": RESPONSE_TYPE, "time": response_time.isoformat(),
                    "recordedtime": response_time.isoformat(), "statuscode": "200",
                    "latencyms": "3.0"},
        payload=RESPONSE_BODY, rows=[{"prediction": 1}, {"prediction": 2}],
    )  # fmt: skip
    return request, response


@contextmanager
def postgresql_database(admin_dsn: str) -> Iterator[str]:
    name = f"infermon_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        host, port, user = admin.info.host, admin.info.port, admin.info.user
    try:
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))


@contextmanager
def database(kind: str, admin_dsn: str) -> Iterator[Store]:
    if kind == "sqlite":
        folder = tempfile.TemporaryDirectory(prefix="infermon-bench-")
        with folder, Store(f"sqlite:///{Path(folder.name) / 'bench.db'}") as store:
            store.upgrade()
            yield store
    else:
        with postgresql_database(admin_dsn) as url, Store(url) as store:
            store.upgrade()
            yield store


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving a Store (local server, /proc)."""

    def __init__(self, store: Store) -> None:
        self._pids: set[int] = set()
        if store.engine.dialect.name == "postgresql":
            event.listen(store.engine, "connect", self._connected)
            store.engine.dispose()

    def _connected(self, dbapi_connection: Any, _record: Any) -> None:
        self._pids.add(dbapi_connection.info.backend_pid)

    def seconds(self) -> float:
        total = 0.0
        for pid in self._pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
        return total


def write_rate(store: Store, events: list[StoredEvent]) -> dict[str, float]:
    backend = BackendCpu(store)
    wall, cpu, server = time.perf_counter(), time.process_time(), backend.seconds()
    for start in range(0, len(events), BATCH_EVENTS):
        store.write(events[start : start + BATCH_EVENTS])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "events_per_s": len(events) / wall,
        "python_us": cpu / len(events) * 1e6,
        "server_us": (backend.seconds() - server) / len(events) * 1e6,
    }


def bare_insert_rate(store: Store, batches: list[BatchRows], events: int) -> float:
    """The same rows into tables without keys or indexes: executemany or binary COPY."""
    tables = ("events", "inferences", "instances")
    with store.engine.begin() as connection:
        for table in tables:
            connection.exec_driver_sql(
                f"CREATE TABLE bare_{table} AS SELECT * FROM {table} WHERE 1 = 0"
            )
    postgresql = store.engine.dialect.name == "postgresql"
    started = time.perf_counter()
    for rows in batches:
        with store.engine.begin() as connection:
            driver: Any = connection.connection.driver_connection
            cursor = driver.cursor()
            for table in tables:
                columns = ROW_COLUMNS[table]
                if postgresql:
                    copy_sql = (
                        f"COPY bare_{table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                    )
                    with cursor.copy(copy_sql) as copy:
                        copy.set_types(store_write._COPY_TYPES[table])
                        for row in getattr(rows, table):
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" * len(columns))
                    cursor.executemany(
                        f"INSERT INTO bare_{table} VALUES ({marks})", getattr(rows, table)
                    )
            cursor.close()
    return events / (time.perf_counter() - started)


def bench_writes(kind: str, admin_dsn: str, event_count: int) -> None:
    events = [e for number in range(event_count // 2) for e in kserve_call(number)]
    time_value = sqlite_time_text if kind == "sqlite" else as_utc
    started = time.perf_counter()
    batches = [
        batch_rows(events[start : start + BATCH_EVENTS], [], datetime.now(UTC), time_value)
        for start in range(0, len(events), BATCH_EVENTS)
    ]
    building = len(events) / (time.perf_counter() - started)
    rows = sum(len(b.events) + len(b.inferences) + len(b.instances) for b in batches)
    with database(kind, admin_dsn) as store:
        fresh = write_rate(store, events)
        replay = write_rate(store, events[: len(events) // 4])
        bare = bare_insert_rate(store, batches, len(events))
    unit = "COPY" if kind == "postgresql" else "executemany"
    print(f"\n== {kind}: writes, {len(events):,} events = {len(events) // 2:,} calls, "
          f"{rows:,} rows ({rows / len(events):.1f} per event), "
          f"batches of {BATCH_EVENTS:,}")  # fmt: skip
    print(f"  bare tables, {unit} of the same rows: {bare:>9,.0f} events/s "
          f"({bare * rows / len(events):,.0f} rows/s)")  # fmt: skip
    print(f"  Store.write, new events:        {fresh['events_per_s']:>9,.0f} events/s  "
          f"{fresh['events_per_s'] / bare:.2f}x bare   python {fresh['python_us']:.1f} us/event, "
          f"postgres backend {fresh['server_us']:.1f} us/event")  # fmt: skip
    print(f"  Store.write, replayed events:   {replay['events_per_s']:>9,.0f} events/s")
    print(f"  of which building rows (Python): {building:>8,.0f} events/s")


def _instance_rows(count: int, time_value: Callable[[datetime], Any]) -> Iterator[list[tuple]]:
    """Chunks of (inference row, instance rows) for `count` instances, 2 per call, seeded."""
    rng = random.Random(7)
    chunk_calls = 25_000
    for first_call in range(0, count // 2, chunk_calls):
        inference_rows, instance_rows = [], []
        for number in range(first_call, min(first_call + chunk_calls, count // 2)):
            request_id = f"call-{number:08d}"
            moment = START + timedelta(milliseconds=number)
            value = time_value(moment)
            response_value = time_value(moment + timedelta(milliseconds=3))
            inference_rows.append((
                request_id, READ_MODEL, "default", READ_MODEL, "predictor", "v1", value, value,
                response_value, 3.0, 200, 2, 2, 2, False, True, True, False, "v1", "v1",
            ))  # fmt: skip
            for row_index in range(2):
                features = {f"f{i}": round(rng.gauss(0, 1), 6) for i in range(FEATURES)}
                prediction = {"prediction": rng.randrange(3)}
                instance_rows.append((request_id, row_index, READ_MODEL, value,
                                      to_json(features), to_json(prediction)))  # fmt: skip
        yield [("inferences", inference_rows), ("instances", instance_rows)]


def load_instances(store: Store, count: int) -> float:
    postgresql = store.engine.dialect.name == "postgresql"
    time_value = as_utc if postgresql else sqlite_time_text
    columns = {"inferences": INFERENCE_COLUMNS, "instances": INSTANCE_COLUMNS}
    started = time.perf_counter()
    for chunk in _instance_rows(count, time_value):
        with store.engine.begin() as connection:
            driver: Any = connection.connection.driver_connection
            cursor = driver.cursor()
            for table, rows in chunk:
                names = ", ".join(columns[table])
                if postgresql:
                    copy_sql = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
                    with cursor.copy(copy_sql) as copy:
                        copy.set_types(store_write._COPY_TYPES[table])
                        for row in rows:
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" * len(columns[table]))
                    cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
            cursor.close()
    with store.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    return time.perf_counter() - started


def median_ms(action: Callable[[], object], runs: int = 5) -> float:
    action()  # warm-up: caches, prepared plans
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def raw_fetch(store: Store, query: str, params: tuple[Any, ...]) -> Callable[[], object]:
    def fetch() -> object:
        with store.engine.connect() as connection:
            return connection.exec_driver_sql(query, params).all()

    return fetch


def bench_reads(kind: str, admin_dsn: str, count: int) -> None:
    with database(kind, admin_dsn) as store:
        load_s = load_instances(store, count)
        frame = store.latest_instances(READ_MODEL, 10_000)
        assert frame.shape == (10_000, 3 + FEATURES + 1), frame.shape
        mark = "%s" if kind == "postgresql" else "?"
        instances_sql = store_read._LATEST_INSTANCES[kind]  # the store's own query
        newest = f"ORDER BY time DESC, request_id DESC LIMIT {mark}"
        inferences_sql = f"SELECT * FROM inferences {newest}"
        model_sql = f"SELECT * FROM inferences WHERE model = {mark} {newest}"
        figures = {
            "latest_instances(10_000)": (
                median_ms(lambda: store.latest_instances(READ_MODEL, 10_000)),
                median_ms(raw_fetch(store, instances_sql, (READ_MODEL, 10_000))),
            ),
            "latest_inferences(50)": (
                median_ms(lambda: store.latest_inferences(50)),
                median_ms(raw_fetch(store, inferences_sql, (50,))),
            ),
            "latest_inferences(50, model)": (
                median_ms(lambda: store.latest_inferences(50, model=READ_MODEL)),
                median_ms(raw_fetch(store, model_sql, (READ_MODEL, 50))),
            ),
        }
        page = store.latest_inferences(50, model=READ_MODEL)
        deep_page = median_ms(
            lambda: store.latest_inferences(50, model=READ_MODEL, before=page[-1].time)
        )
    print(f"\n== {kind}: reads, {count:,} instances of one model ({FEATURES} numeric features), "
          f"{count // 2:,} inferences; loaded in {load_s:.1f} s")  # fmt: skip
    for name, (store_ms, raw_ms) in figures.items():
        print(f"  {name:<30} {store_ms:>7.1f} ms median of 5   raw fetchall {raw_ms:>6.1f} ms   "
              f"{store_ms / raw_ms:.2f}x raw")  # fmt: skip
    print(f"  {'latest_inferences(50, before)':<30} {deep_page:>7.1f} ms median of 5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres", default="host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    )
    parser.add_argument("--skip", choices=["writes", "reads"], default=None)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; PostgreSQL at {args.postgres!r}")
    for kind in args.databases.split(","):
        if args.skip != "writes":
            bench_writes(kind, args.postgres, args.events)
        if args.skip != "reads":
            bench_reads(kind, args.postgres, args.instances)


if __name__ == "__main__":
    main()
