"""A model's traffic over time, for the dashboard: calls, errors and latency per time bucket.

Like `read`, it imports only SQLAlchemy and the schema. Buckets are `bucket_s` seconds long,
aligned on the Unix epoch. The cost is bounded by the number of buckets, not of calls: each
bucket is three index range reads (its calls counted on the model-and-time index, its errors
on the partial index of errors, its latencies read newest first up to `LATENCY_SAMPLE`).
Grouping every call of a range in SQL instead took ~12 s for a million calls on SQLite.
Latency figures are exact for a bucket of at most `LATENCY_SAMPLE` timed calls and those of
its latest `LATENCY_SAMPLE` calls for a busier one (fewer when a request asks for more than
120 buckets: `latency_sample`, so that no request reads more than `LATENCY_ROWS`):
nearest-rank percentiles (the value at rank ceil(p * n) of n latencies) and the mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.engine import Connection

from monitor.store.schema import ANSWERED_WITH_ERROR, inferences

PERCENTILES = (50, 95, 99)
# A bucket's latencies read at most: p99 is then the 990th of 1,000, ±3 ranks of sampling
# error, while 120 buckets (the page's) read at most 120,000 rows.
LATENCY_SAMPLE = 1000
# The latencies one request reads at most: more buckets than 120 take fewer each.
LATENCY_ROWS = 120_000


def latency_sample(buckets: int) -> int:
    """How many latencies each of `buckets` buckets reads."""
    return max(1, min(LATENCY_SAMPLE, LATENCY_ROWS // max(1, buckets)))


@dataclass(frozen=True)
class TrafficBucket:
    start: datetime
    calls: int
    errors: int  # answered with a status >= 400
    latency_mean_ms: float | None  # None: no call of the bucket has a latency
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None


def model_seen(connection: Connection, model: str) -> bool:
    """Some inference of `model` is stored."""
    query = select(inferences.c.request_id).where(inferences.c.model == model).limit(1)
    return connection.execute(query).first() is not None


def nearest_rank(ordered: Sequence[float], percent: int) -> float:
    """The value at rank ceil(percent / 100 * n) of `ordered` (ascending, not empty)."""
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


def _in_range(model: str, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    return [inferences.c.model == model, inferences.c.time >= start, inferences.c.time < end]


def bucket(
    connection: Connection,
    model: str,
    start: datetime,
    end: datetime,
    sample: int = LATENCY_SAMPLE,
) -> tuple[int, int, list[float | None]]:
    """Calls and errors in [start, end), then the latency mean and `PERCENTILES` of its
    latest `sample` timed calls (None without one)."""
    in_range = _in_range(model, start, end)
    calls = connection.scalar(select(func.count()).select_from(inferences).where(*in_range))
    if not calls:
        return 0, 0, _latency_figures([])
    errors = connection.scalar(
        select(func.count()).select_from(inferences).where(*in_range, text(ANSWERED_WITH_ERROR))
    )
    latencies = connection.scalars(
        select(inferences.c.latency_ms)
        .where(*in_range, inferences.c.latency_ms.is_not(None))
        .order_by(inferences.c.time.desc())
        .limit(sample)
    ).all()
    return int(calls), int(errors or 0), _latency_figures([float(v) for v in latencies])


def _latency_figures(latencies: list[float]) -> list[float | None]:
    """Mean, then each of `PERCENTILES`; all None without a latency."""
    if not latencies:
        return [None] * (1 + len(PERCENTILES))
    ordered = sorted(latencies)
    return [sum(ordered) / len(ordered), *(nearest_rank(ordered, p) for p in PERCENTILES)]


def bucket_numbers(since: datetime, until: datetime, bucket_s: int) -> range:
    """The numbers (epoch seconds // bucket_s) of the buckets meeting [since, until)."""
    return range(math.floor(since.timestamp() / bucket_s), math.ceil(until.timestamp() / bucket_s))


def buckets(
    since: datetime, until: datetime, bucket_s: int
) -> Iterator[tuple[datetime, datetime, datetime]]:
    """Each bucket meeting [since, until): its aligned start, and its part of the range."""
    size = timedelta(seconds=bucket_s)
    for number in bucket_numbers(since, until, bucket_s):
        bucket_start = datetime.fromtimestamp(number * bucket_s, UTC)
        yield bucket_start, max(since, bucket_start), min(until, bucket_start + size)


def traffic(
    connection: Connection,
    model: str,
    since: datetime,
    until: datetime,
    bucket_s: int,
    sample: int = LATENCY_SAMPLE,
) -> list[TrafficBucket]:
    """The model's inferences in [since, until) per bucket, oldest first; empty buckets left out."""
    found = []
    for bucket_start, start, end in buckets(since, until, bucket_s):
        calls, errors, figures = bucket(connection, model, start, end, sample)
        if calls:
            found.append(TrafficBucket(bucket_start, calls, errors, *figures))
    return found
