"""A model's traffic over time, for the dashboard: calls, errors and latency per time bucket.

Like `read`, it imports only SQLAlchemy and the schema. Buckets are `bucket_s` seconds long,
aligned on the Unix epoch; latency percentiles are nearest-rank (the value at rank
ceil(p * n) of the bucket's n latencies), computed in SQL by window functions that SQLite
and PostgreSQL both have, so no row leaves the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, ColumnElement, Integer, case, cast, extract, func, select
from sqlalchemy.engine import Connection

from monitor.store.schema import inferences

PERCENTILES = (50, 95, 99)
# A plain "/" of two integers: integer division on both databases (SQLAlchemy's own "/" and
# "//" cast to a decimal or add a FLOOR). Its precedence is multiplication's, so that a sum
# divided is put in parentheses.
_DIVISION = 8


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


def _bucket(dialect: str, bucket_s: int) -> ColumnElement[int]:
    """The bucket number of an inference's time: floor(epoch seconds / bucket_s)."""
    if dialect == "sqlite":  # the time is stored as UTC text, which strftime reads
        seconds = cast(func.strftime("%s", inferences.c.time), Integer)
        return seconds.op("/", precedence=_DIVISION, return_type=Integer)(bucket_s)
    return cast(func.floor(extract("epoch", inferences.c.time) / bucket_s), BigInteger)


def _rank(percent: int, timed: ColumnElement[int]) -> ColumnElement[int]:
    """ceil(percent / 100 * timed) in integers: (percent * timed + 99) / 100."""
    return (timed * percent + 99).op("/", precedence=_DIVISION, return_type=Integer)(100)


def traffic(
    connection: Connection, model: str, since: datetime, until: datetime, bucket_s: int
) -> list[TrafficBucket]:
    """The model's inferences in [since, until) per bucket, oldest first; empty buckets left out."""
    bucket = _bucket(connection.dialect.name, bucket_s).label("bucket")
    latency = inferences.c.latency_ms
    ranked = (
        select(
            bucket,
            latency.label("latency"),
            inferences.c.status_code.label("status"),
            # Calls without a latency sort last, so ranks 1..timed are those with one.
            func.row_number()
            .over(partition_by=bucket, order_by=(latency.is_(None), latency))
            .label("rank"),
            func.count(latency).over(partition_by=bucket).label("timed"),
        )
        .where(inferences.c.model == model, inferences.c.time >= since, inferences.c.time < until)
        .subquery()
    )
    at_rank = [
        func.max(case((ranked.c.rank == _rank(p, ranked.c.timed), ranked.c.latency)))
        for p in PERCENTILES
    ]
    rows = connection.execute(
        select(
            ranked.c.bucket,
            func.count(),
            func.sum(case((ranked.c.status >= 400, 1), else_=0)),
            func.avg(ranked.c.latency),
            *at_rank,
        )
        .group_by(ranked.c.bucket)
        .order_by(ranked.c.bucket)
    )
    return [
        TrafficBucket(
            datetime.fromtimestamp(int(number) * bucket_s, UTC),
            int(calls),
            int(errors or 0),
            *(None if value is None else float(value) for value in (mean, p50, p95, p99)),
        )
        for number, calls, errors, mean, p50, p95, p99 in rows
    ]
