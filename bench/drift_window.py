"""Drift windows in the monitor: one window's cost beside a large store, and what detection
costs the monitor's storage rate, in one run.

1. A model with `--stored` instances (10 numeric features, one categorical, a prediction;
   bulk-inserted straight into the instances table), a reference of its first 10,000
   summarised once; then windows of `--window` instances at the newest end evaluated as the
   monitor does: find the window's bounds, claim it, read its instances, compare and score
   them, write the report with its features and outliers. Target: <= 0.5 s for 10k.
2. `infermon monitor` storing the same pre-produced events with detection on (the default:
   every model, reference of 1,000, windows of 1,000) and with --no-detection, rounds
   alternating (bench/monitor_throughput.py's machinery). Target: on >= 0.8x off.

    python bench/drift_window.py [--databases sqlite,postgresql] [--stored 1000000]
        [--window 10000] [--windows 5] [--calls 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from monitor_throughput import (
    create_topic,
    database_url,
    monitor_rate,
    produce_calls,
)

from monitor.detection_config import ModelDetection, ReferenceSpec, WindowSpec
from monitor.evaluation import evaluate
from monitor.references import LoadedReference, reference_data, summarised
from monitor.store.detection_store import DetectionStore
from monitor.store.schema import sqlite_time_text
from monitor.store.store import Store
from monitor.store.windows import InstanceRange, WindowBounds
from tests.fixtures.broker import TansuBroker

MODEL = "bench-model"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 50_000


def instance_chunk(
    start: int, count: int, rng: np.random.Generator, t0: datetime = T0
) -> list[tuple[Any, ...]]:
    numeric = rng.normal(size=(count, 10))
    colours = rng.choice(["red", "green", "blue", "grey"], size=count)
    rows = []
    for n in range(count):
        features = {f"x{j}": float(numeric[n, j]) for j in range(10)}
        features["colour"] = str(colours[n])
        prediction = {"prediction": float(numeric[n, 0] + numeric[n, 1])}
        time = t0 + timedelta(milliseconds=start + n)
        features_json, prediction_json = orjson.dumps(features), orjson.dumps(prediction)
        rows.append((f"req-{start + n:08d}", 0, MODEL, time, features_json.decode(),
                     prediction_json.decode()))  # fmt: skip
    return rows


def bulk_insert(store: Store, total: int, t0: datetime = T0) -> float:
    """`total` instances 1 ms apart from `t0` straight into the table: COPY on PostgreSQL,
    executemany on SQLite."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, total, CHUNK):
        rows = instance_chunk(start, min(CHUNK, total - start), rng, t0)
        with store.write_transaction() as connection:
            if connection.dialect.name == "sqlite":
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cursor.executemany(
                    "INSERT INTO instances (request_id, row_index, model, time, features,"
                    " prediction) VALUES (?, ?, ?, ?, ?, ?)",
                    [(*row[:3], sqlite_time_text(row[3]), *row[4:]) for row in rows],
                )
            else:
                driver = connection.connection.driver_connection
                with (
                    driver.cursor() as cursor,
                    cursor.copy(  # type: ignore[union-attr]
                        "COPY instances (request_id, row_index, model, time, features, prediction)"
                        " FROM STDIN"
                    ) as copy,
                ):
                    for row in rows:
                        copy.write_row(row)
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE instances")
            connection.commit()
    return time.perf_counter() - started


def window_costs(store: Store, window: int, windows: int) -> dict[str, list[float]]:
    """Seconds per step for each of `windows` windows at the newest end of the store."""
    detection = DetectionStore(store)
    config = ModelDetection(reference=ReferenceSpec(instances=10_000),
                            window=WindowSpec(instances=window))  # fmt: skip
    data = reference_data(detection, MODEL, config.reference, datetime.now(UTC))
    assert data is not None
    reference = detection.add_reference(summarised(MODEL, 1, config, data))
    loaded = LoadedReference.of(reference)
    total = detection.count_instances(InstanceRange(MODEL))
    costs: dict[str, list[float]] = {k: [] for k in ("bounds", "claim", "read", "evaluate",
                                                     "write", "total")}  # fmt: skip
    first_seq = total // window - windows
    after = detection.nth_instance_key(InstanceRange(MODEL), first_seq * window)
    for seq in range(first_seq + 1, first_seq + windows + 1):
        marks = [time.perf_counter()]
        following = InstanceRange(MODEL, after=after)
        through = detection.nth_instance_key(following, window)
        first = detection.nth_instance_key(following, 1)
        assert through is not None and first is not None
        marks.append(time.perf_counter())
        bounds = WindowBounds("count", seq, first.time, through.time, after, through)
        claim = detection.claim_new(MODEL, bounds, reference.version, "bench#1", 30.0)
        assert claim is not None
        marks.append(time.perf_counter())
        frame = detection.instances(bounds.instance_range(MODEL))
        marks.append(time.perf_counter())
        evaluation = evaluate(frame, loaded, config)
        marks.append(time.perf_counter())
        assert detection.finish(claim, evaluation.rows) is not None
        marks.append(time.perf_counter())
        assert len(frame) == window
        for name, begin, end in zip(costs, marks, marks[1:], strict=False):
            costs[name].append(end - begin)
        costs["total"].append(marks[-1] - marks[0])
        after = through
    return costs


@contextlib.contextmanager
def store_of(kind: str, folder: Path) -> Iterator[Store]:
    with database_url(kind, folder, "window") as url, Store(url) as store:
        store.upgrade()
        yield store


def throughput(kind: str, folder: Path, calls: int, partitions: int, rounds: int) -> None:
    with TansuBroker() as broker:
        topic = "bench.payloads"
        create_topic(broker.bootstrap, topic, partitions=partitions)
        expected = produce_calls(broker.bootstrap, topic, calls)
        rates: dict[str, list[float]] = {"on": [], "off": []}
        for round_number in range(rounds):
            for mode, extra in (("on", ()), ("off", ("--no-detection",))):
                with database_url(kind, folder, f"{mode}-{round_number}") as url:
                    rate = monitor_rate(broker.bootstrap, topic, url, 1, expected, extra)[0]
                rates[mode].append(rate)
        on, off = (statistics.median(rates[m]) for m in ("on", "off"))
        print(f"{kind:>10}: monitor stores {expected:,} events (2-row v1 batches): detection on "
              f"{on:,.0f} events/s, off {off:,.0f} events/s: {on / off:.2f}x "
              f"(runs on {', '.join(f'{r:,.0f}' for r in rates['on'])}; "
              f"off {', '.join(f'{r:,.0f}' for r in rates['off'])})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma list")
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.databases.split(","):
            with store_of(kind, Path(folder)) as store:
                seconds = bulk_insert(store, args.stored)
                print(f"{kind:>10}: {args.stored:,} instances bulk-inserted in {seconds:.0f} s")
                costs = window_costs(store, args.window, args.windows)
            medians = {name: statistics.median(values) for name, values in costs.items()}
            steps = ", ".join(f"{name} {medians[name] * 1000:.0f}" for name in costs
                              if name != "total")  # fmt: skip
            print(f"{kind:>10}: a {args.window:,}-instance window of {args.stored:,} stored: "
                  f"{medians['total']:.3f} s (median of {args.windows}; ms: {steps})")  # fmt: skip
            if not args.skip_throughput:
                throughput(kind, Path(folder), args.calls, args.partitions, args.rounds)


if __name__ == "__main__":
    main()
