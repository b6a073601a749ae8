"""A model's traffic per time bucket, on SQLite and PostgreSQL: calls, errors and nearest-rank
latency percentiles, checked against numpy's over the same latencies."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from monitor.store.store import Store
from monitor.store.traffic_read import (
    LATENCY_ROWS,
    LATENCY_SAMPLE,
    TrafficBucket,
    latency_sample,
    traffic,
)
from tests.monitor.store.helpers import T0, request, response

MINUTE = timedelta(minutes=1)


def calls(store: Store, prefix: str, start: timedelta, latencies: list[float],
          statuses: list[int], model: str = "iris") -> None:  # fmt: skip
    events = []
    for n, (latency, status) in enumerate(zip(latencies, statuses, strict=True)):
        at = T0 + start + n * timedelta(seconds=1)
        events += [request(f"{prefix}{n}", time=at, model=model),
                   response(f"{prefix}{n}", time=at + timedelta(milliseconds=5), model=model,
                            status_code=status, latency_ms=latency)]  # fmt: skip
    store.write(events)


def nearest_rank(values: list[float], percent: int) -> float:
    return float(np.percentile(values, percent, method="inverted_cdf"))


def test_buckets_count_calls_and_errors_and_give_nearest_rank_percentiles(store: Store) -> None:
    latencies = [float(x) for x in np.random.default_rng(0).gamma(2.0, 20.0, 37).round(3)]
    statuses = [500 if n % 9 == 0 else 404 if n % 10 == 3 else 200 for n in range(37)]
    calls(store, "a", timedelta(0), latencies, statuses)  # 12:00:00 .. 12:00:36
    calls(store, "b", 2 * MINUTE, [12.5, 7.5], [200, 200])  # 12:02; 12:01 has none
    calls(store, "late", 5 * MINUTE, [1.0], [200])  # outside the range asked
    calls(store, "other", timedelta(0), [99.0], [500], model="wine")
    store.write([request("unanswered", time=T0 + 2 * MINUTE + timedelta(seconds=30))])

    with store.engine.connect() as connection:
        found = traffic(connection, "iris", T0, T0 + 5 * MINUTE, 60)

    first, second = found
    assert (first.start, first.calls, first.errors) == (T0, 37, sum(s >= 400 for s in statuses))
    assert first.latency_mean_ms is not None
    assert abs(first.latency_mean_ms - float(np.mean(latencies))) < 1e-9
    assert [first.latency_p50_ms, first.latency_p95_ms, first.latency_p99_ms] == [
        nearest_rank(latencies, p) for p in (50, 95, 99)
    ]
    # The call without an answer counts, and no latency is made up for it.
    assert second == TrafficBucket(T0 + 2 * MINUTE, 3, 0, 10.0, 7.5, 12.5, 12.5)


def test_buckets_are_aligned_on_the_epoch_and_a_bucket_of_no_latency_has_none(
    store: Store,
) -> None:
    store.write([request("q1", time=T0 + timedelta(seconds=70)),
                 request("q2", time=T0 + timedelta(seconds=299))])  # fmt: skip
    with store.engine.connect() as connection:
        found = traffic(connection, "iris", T0 + timedelta(seconds=65), T0 + 10 * MINUTE, 300)
        assert traffic(connection, "no-such-model", T0, T0 + MINUTE, 60) == []

    assert found == [TrafficBucket(T0, 2, 0, None, None, None, None)]


def test_a_busier_bucket_counts_every_call_and_takes_latency_from_its_latest_calls(
    store: Store,
) -> None:
    """Counts stay exact however busy a bucket is; its latency figures come from its latest
    `sample` timed calls (here 5 of 12), so that a bucket costs a bounded read."""
    latencies = [float(n) for n in (40, 10, 30, 20, 90, 70, 80, 60, 50, 5, 15, 25)]
    statuses = [500 if n in (1, 2, 11) else 200 for n in range(12)]
    calls(store, "busy", timedelta(0), latencies, statuses)  # one second apart: one minute
    calls(store, "quiet", MINUTE, [3.0, 1.0], [200, 200])

    with store.engine.connect() as connection:
        busy, quiet = traffic(connection, "iris", T0, T0 + 2 * MINUTE, 60, sample=5)

    latest = latencies[-5:]
    assert (busy.calls, busy.errors) == (12, 3)
    assert busy.latency_mean_ms == sum(latest) / 5
    assert [busy.latency_p50_ms, busy.latency_p95_ms, busy.latency_p99_ms] == [
        nearest_rank(latest, p) for p in (50, 95, 99)
    ]
    assert quiet == TrafficBucket(T0 + MINUTE, 2, 0, 2.0, 1.0, 3.0, 3.0)


def test_a_request_of_many_buckets_reads_fewer_latencies_per_bucket() -> None:
    """No request reads more than LATENCY_ROWS latencies, however many buckets it asks for."""
    assert latency_sample(1) == latency_sample(120) == LATENCY_SAMPLE
    assert latency_sample(2000) * 2000 <= LATENCY_ROWS
    assert latency_sample(10**9) == 1
