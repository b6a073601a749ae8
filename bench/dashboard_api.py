"""The dashboard's API over a large store: latency of its main reads, on SQLite and PostgreSQL.

One model with `--stored` calls of one instance each (1 ms apart; inferences and instances
bulk-inserted straight into the tables, as bench/drift_window.py does), the request and
response events of its newest `--events` calls (an inference's detail reads them by request
id), and `--windows` drift windows with their reports of 20 features each. Then
`infermon dashboard` (a child process, as deployed) is asked, one request at a time after a
few warm-up requests, `--requests` times each:

- GET /api/v1/models                                  target p95 <= 100 ms
- GET /api/v1/models/{m}/drift/history (last 100)     target p95 <= 100 ms (reports kept as
  JSON after the first request: the first one's time is printed too)
- GET /api/v1/models/{m}/inferences (first page)      target p95 <= 50 ms
- GET /api/v1/inferences/{id} (random stored calls)   target p95 <= 20 ms
- GET /metrics (its store read cached 5 s: most scrapes are served from the cache)
- GET /api/v1/models/{m}/drift/history?limit=200&features=false (the page's timeline)
- GET /api/v1/models/{m}/traffic (the last day, as the page asks; closed buckets kept 30 s)

    python bench/dashboard_api.py [--databases sqlite,postgresql] [--stored 1000000]
        [--events 20000] [--windows 1000] [--requests 200]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import REPO_ROOT, cpu_seconds
from drift_window import MODEL, bulk_insert
from monitor_throughput import database_url

from monitor.store.schema import (
    drift_features,
    drift_reports,
    drift_windows,
    events,
    inferences,
    sqlite_time_text,
)
from monitor.store.store import Store
from tests.fixtures.processes import ServerProcess, free_port, http_ok

CHUNK = 50_000
FEATURES = 20
WINDOW = 1000  # instances per drift window
TARGETS_MS = {"models": 100, "drift history": 100, "inferences page": 50, "inference": 20}


def request_id(n: int) -> str:
    return f"req-{n:08d}"  # as drift_window.instance_chunk names the calls


# The calls start an hour ago (1M calls 1 ms apart take 17 minutes): all of them are in the
# page's default range, the last day, as for a busy model.
START = (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)


def call_time(n: int) -> datetime:
    return START + timedelta(milliseconds=n)


def copy_rows(store: Store, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
              ) -> None:  # fmt: skip
    """Rows straight into a table: COPY on PostgreSQL, executemany on SQLite (times as the
    store's text, booleans as 0/1)."""
    with store.write_transaction() as connection:
        driver = connection.connection.driver_connection
        if connection.dialect.name == "sqlite":
            marks = ", ".join("?" for _ in columns)
            converted = [
                tuple(sqlite_time_text(v) if isinstance(v, datetime) else v for v in row)
                for row in rows
            ]
            driver.cursor().executemany(  # type: ignore[union-attr]
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", converted
            )
        else:
            copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)


INFERENCE_COLUMNS = (
    "request_id", "model", "protocol", "time", "request_time", "response_time", "latency_ms",
    "status_code", "batch_size", "request_rows", "response_rows", "batch_size_mismatch",
    "has_request", "has_response", "orphaned", "request_payload_kind", "response_payload_kind",
)  # fmt: skip


def insert_inferences(store: Store, total: int) -> None:
    for start in range(0, total, CHUNK):
        rows = []
        for n in range(start, min(start + CHUNK, total)):
            at = call_time(n)
            status = 500 if n % 50 == 49 else 200
            rows.append((request_id(n), MODEL, "v1", at, at, at + timedelta(milliseconds=12),
                         12.0 + n % 7, status, 1, 1, 1, False, True, True, False, "json",
                         "json"))  # fmt: skip
        copy_rows(store, "inferences", INFERENCE_COLUMNS, rows)


EVENT_COLUMNS = (
    "source", "event_id", "type", "kind", "request_id", "model", "time", "stored_at",
    "content_type", "attributes", "payload", "payload_bytes", "payload_kind", "truncated",
    "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip


def insert_events(store: Store, total: int, newest: int) -> None:
    rows = []
    for n in range(max(0, total - newest), total):
        at = call_time(n)
        for offset, (kind, body) in enumerate((
            ("request", {"instances": [{f"x{j}": 0.5 * j for j in range(10)} | {"colour": "red"}]}),
            ("response", {"predictions": [0.5]}),
        )):  # fmt: skip
            event_type = f"org.kubeflow.serving.inference.{kind}"
            attributes = {"id": request_id(n), "type": event_type, "source": "bench",
                          "specversion": "1.0", "inferenceservicename": MODEL}  # fmt: skip
            payload = orjson.dumps(body)
            rows.append(("bench", request_id(n), event_type, kind, request_id(n), MODEL, at, at,
                         "application/json", orjson.dumps(attributes).decode(), payload,
                         len(payload), "json", False, "bench", 0, 2 * n + offset))  # fmt: skip
    for start in range(0, len(rows), CHUNK):
        copy_rows(store, "events", EVENT_COLUMNS, rows[start : start + CHUNK])


def feature_row(report_id: int, position: int, drifted: bool) -> dict[str, Any]:
    bins = 10
    return {
        "report_id": report_id, "position": position, "column": f"f{position:02d}",
        "kind": "numeric", "test": "ks", "status": "ok", "reason": None,
        "statistic": 0.2 if drifted else 0.01, "p_value": 0.001 if drifted else 0.6,
        "distance": None, "threshold": 0.05, "threshold_source": "default", "drift": drifted,
        "missing_share": 0.0, "reference_missing_share": 0.0, "missing_drift": False,
        "unseen_categories": 0,
        "histogram": {"labels": [f"{b / bins:.1f}" for b in range(bins)],
                      "reference": [0.1] * bins, "current": [0.1] * bins},
    }  # fmt: skip


def insert_reports(store: Store, windows: int, total: int) -> None:
    """`windows` count windows of WINDOW instances at the newest end, each done with one
    report of FEATURES features (every 7th window drifted)."""
    first = max(0, total - windows * WINDOW)
    window_rows, report_rows, feature_rows = [], [], []
    for seq in range(1, windows + 1):
        begin, end = first + (seq - 1) * WINDOW, first + seq * WINDOW - 1
        drifted = seq % 7 == 0
        window_rows.append({
            "id": seq, "model": MODEL, "seq": seq, "kind": "count",
            "window_start": call_time(begin), "window_end": call_time(end),
            "end_time": call_time(end), "end_request_id": request_id(end), "end_row_index": 0,
            "state": "done", "claimed_by": "bench#1", "lease_until": call_time(end),
            "revision": 1, "instances": WINDOW, "late": 0, "reference_version": 1,
            "done_at": call_time(end),
        })  # fmt: skip
        report_rows.append({
            "id": seq, "window_id": seq, "revision": 1, "model": MODEL,
            "window_start": call_time(begin), "window_end": call_time(end),
            "instances": WINDOW, "reference_version": 1, "dataset_drift": drifted,
            "share": 0.5 if drifted else 0.0, "drifted": 10 if drifted else 0,
            "valid": FEATURES, "drift_share": 0.5, "correction": "none", "late": 0,
            "outliers": 3, "computed_at": call_time(end), "multivariate": None,
        })  # fmt: skip
        feature_rows += [feature_row(seq, p, drifted and p < 10) for p in range(FEATURES)]
    with store.write_transaction() as connection:
        connection.execute(drift_windows.insert(), window_rows)
        connection.execute(drift_reports.insert(), report_rows)
        for start in range(0, len(feature_rows), CHUNK):
            connection.execute(drift_features.insert(), feature_rows[start : start + CHUNK])


def fill(store: Store, stored: int, newest_events: int, windows: int) -> float:
    started = time.perf_counter()
    bulk_insert(store, stored, START)  # the instances, as drift_window does (ANALYZEs instances)
    insert_inferences(store, stored)
    insert_events(store, stored, newest_events)
    insert_reports(store, windows, stored)
    # As autovacuum leaves a settled PostgreSQL table (its insert threshold is 20 % growth):
    # analysed, and vacuumed so that index-only scans need not visit the table for each row.
    settle = "VACUUM ANALYZE" if store.engine.dialect.name == "postgresql" else "ANALYZE"
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in (inferences, events, drift_reports, drift_features):
            connection.exec_driver_sql(f"{settle} {table.name}")
    return time.perf_counter() - started


CPU_MS: dict[str, float] = {}  # the server's CPU time per request, by what was asked


def timed(client: httpx.Client, paths: Sequence[str], pid: int, name: str, warm_up: int = 5
          ) -> list[float]:  # fmt: skip
    """Milliseconds of each request, after `warm_up` requests not counted; the server's CPU
    time per request into CPU_MS (a figure the machine's other load changes less)."""
    for path in paths[:warm_up]:
        assert client.get(path).status_code == 200, path
    cpu_before = cpu_seconds(pid)
    found = []
    for path in paths:
        started = time.perf_counter()
        answer = client.get(path)
        found.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:200]}"
    CPU_MS[name] = (cpu_seconds(pid) - cpu_before) * 1000 / len(paths)
    return found


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


@contextlib.contextmanager
def serving(url: str) -> Iterator[tuple[str, int]]:
    """`infermon dashboard` over `url` as a child process, once ready: its address and pid."""
    port = free_port()
    argv = [sys.executable, "-m", "infermon.cli", "dashboard", "--database-url", url,
            "--port", str(port), "--insecure-writes"]  # fmt: skip
    server = ServerProcess("infermon-dashboard", argv, cwd=REPO_ROOT, env=None)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: http_ok(f"{base}/readyz"), 60, "readiness")
        yield base, server.pid
    finally:
        server.stop()


def first_request(client: httpx.Client, path: str, what: str) -> None:
    """Times one request before anything is counted or kept by the server."""
    started = time.perf_counter()
    assert client.get(path).status_code == 200, path
    print(f"   first GET {what}: {(time.perf_counter() - started) * 1000:.0f} ms")


def measure(url: str, stored: int, newest_events: int, requests: int) -> dict[str, list[float]]:
    ids = [request_id(n) for n in range(max(0, stored - newest_events), stored)]
    rng = random.Random(0)
    api = "/api/v1"
    history = f"{api}/models/{MODEL}/drift/history?limit=100"
    traffic = f"{api}/models/{MODEL}/traffic"  # the last day, as the page asks
    with serving(url) as (base, pid), httpx.Client(base_url=base, timeout=60) as client:
        first_request(client, f"{api}/models", "/models (counts the model's rows once)")
        first_request(client, history, "drift history (no report kept as JSON)")
        first_request(client, traffic, "traffic (the last day, no bucket kept)")
        asked = {
            "models": [f"{api}/models"] * requests,
            "drift history": [history] * requests,
            "inferences page": [f"{api}/models/{MODEL}/inferences"] * requests,
            "inference": [f"{api}/inferences/{rng.choice(ids)}" for _ in range(requests)],
            "metrics": ["/metrics"] * requests,
            "timeline": [f"{api}/models/{MODEL}/drift/history?limit=200&features=false"] * requests,
            "traffic": [traffic] * requests,
        }
        return {name: timed(client, paths, pid, name) for name, paths in asked.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list")
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000, help="newest calls with events")
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.databases.split(","):
            with database_url(kind, Path(folder), "dashboard") as url:
                with Store(url) as store:
                    store.upgrade()
                    seconds = fill(store, args.stored, args.events, args.windows)
                print(f"{kind:>10}: {args.stored:,} calls and instances, {args.windows:,} "
                      f"reports of {FEATURES} features stored in {seconds:.0f} s")  # fmt: skip
                found = measure(url, args.stored, args.events, args.requests)
            for name, values in found.items():
                target = TARGETS_MS.get(name)
                verdict = "" if target is None else (
                    f" (target <= {target} ms: {'met' if p95(values) <= target else 'MISSED'})"
                )  # fmt: skip
                print(f"{kind:>10}: GET {name:<16} p50 {statistics.median(values):6.1f} ms, "
                      f"p95 {p95(values):6.1f} ms{verdict}; server CPU "
                      f"{CPU_MS[name]:5.1f} ms/request")  # fmt: skip


if __name__ == "__main__":
    main()
