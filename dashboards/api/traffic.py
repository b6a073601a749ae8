"""GET /models/{model}/traffic: calls, errors and latency per time bucket, for the page's charts.

Buckets are `bucket` seconds long, aligned on the Unix epoch, from the one holding `since` to
the one holding the last moment before `until`; a bucket without calls is there with zeros.
Buckets that ended over a minute ago are kept 30 s (`dashboards.traffic_cache`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from dashboards.auth import require_read
from dashboards.database import Reading
from dashboards.errors import ERROR_RESPONSES, NOT_FOUND, bad_request, not_found
from dashboards.traffic_cache import TrafficCache
from monitor.store import traffic_read
from monitor.store.schema import as_utc

DEFAULT_RANGE = timedelta(hours=24)
# The epoch seconds a bucket may start at or end by: what a datetime can hold.
FIRST_MOMENT = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LAST_MOMENT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
MAX_BUCKETS = 2000
# The bucket sizes chosen when none is asked for: the smallest giving at most 120 buckets.
NICE_BUCKETS_S = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200, 86400, 604800)

router = APIRouter(dependencies=[Depends(require_read)], responses=ERROR_RESPONSES)


class TrafficBucket(BaseModel):
    start: datetime
    calls: int = Field(description="inferences whose time falls in the bucket")
    errors: int = Field(description="of those, answered with a status >= 400")
    error_rate: float | None = Field(description="errors / calls; null without calls")
    latency_mean_ms: float | None
    latency_p50_ms: float | None = Field(description="nearest-rank percentiles of latency_ms")
    latency_p95_ms: float | None
    latency_p99_ms: float | None


class Traffic(BaseModel):
    model: str
    since: datetime
    until: datetime
    bucket_s: int
    buckets: list[TrafficBucket]


def _bucket_size(span: timedelta) -> int:
    seconds = span.total_seconds()
    return next((size for size in NICE_BUCKETS_S if seconds / size <= 120), NICE_BUCKETS_S[-1])


def traffic_cache(request: Request) -> TrafficCache:
    cache: TrafficCache = request.app.state.traffic_cache
    return cache


Since = Annotated[datetime | None, Query(description="default: 24 hours before until")]
Until = Annotated[datetime | None, Query(description="exclusive; default: now")]
Bucket = Annotated[
    int | None,
    Query(ge=1, le=31_622_400, description="seconds; default: the smallest of 1 s .. 1 week "
          "giving at most 120 buckets"),
]  # fmt: skip


@router.get("/models/{model}/traffic", response_model=Traffic, responses=NOT_FOUND)
def traffic(
    model: str,
    connection: Reading,
    cache: Annotated[TrafficCache, Depends(traffic_cache)],
    since: Since = None,
    until: Until = None,
    bucket: Bucket = None,
) -> Traffic:  # fmt: skip
    end = as_utc(until) if until else datetime.now(UTC)
    start = as_utc(since) if since else end - DEFAULT_RANGE
    if start >= end:
        raise bad_request("until must be after since")
    size = bucket or _bucket_size(end - start)
    numbers = traffic_read.bucket_numbers(start, end, size)
    count = len(numbers)
    if count > MAX_BUCKETS:
        raise bad_request(f"{count} buckets of {size} s: at most {MAX_BUCKETS}; ask for larger")
    if numbers[0] * size < FIRST_MOMENT or numbers[-1] * size + size > LAST_MOMENT:
        raise bad_request(f"buckets of {size} s from since to until must lie within the years "
                          "1 to 9999")  # fmt: skip
    if not traffic_read.model_seen(connection, model):
        raise not_found(f"no model {model!r}")
    found = []
    sample = traffic_read.latency_sample(count)
    for moment, part_start, part_end in traffic_read.buckets(start, end, size):
        calls, errors, figures = cache.bucket(connection, model, part_start, part_end, sample)
        mean, p50, p95, p99 = figures
        found.append(TrafficBucket(
            start=moment, calls=calls, errors=errors, error_rate=errors / calls if calls else None,
            latency_mean_ms=mean, latency_p50_ms=p50, latency_p95_ms=p95, latency_p99_ms=p99,
        ))  # fmt: skip
    return Traffic(model=model, since=start, until=end, bucket_s=size, buckets=found)
