"""The dashboard's cache of closed traffic buckets, on SQLite and PostgreSQL: a closed bucket
is read once per TTL (a call stored late into it shows after the TTL), an open one every time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboards.traffic_cache import TrafficCache
from monitor.store.store import Store
from tests.monitor.store.helpers import T0, request, response

MINUTE = timedelta(minutes=1)


def answered(store: Store, request_id: str, at: datetime, latency_ms: float) -> None:
    store.write(
        [request(request_id, time=at), response(request_id, time=at, latency_ms=latency_ms)]
    )


def test_a_closed_bucket_is_read_once_per_ttl(store: Store) -> None:
    answered(store, "a", T0 + timedelta(seconds=5), 10.0)
    kept, fresh = TrafficCache(ttl_s=3600), TrafficCache(ttl_s=0)
    with store.engine.connect() as connection:
        assert kept.bucket(connection, "iris", T0, T0 + MINUTE, 1000)[:2] == (1, 0)
    answered(store, "late", T0 + timedelta(seconds=6), 30.0)  # stored late, into that bucket
    with store.engine.connect() as connection:
        assert kept.bucket(connection, "iris", T0, T0 + MINUTE, 1000) == (1, 0, [10.0] * 4)
        assert fresh.bucket(connection, "iris", T0, T0 + MINUTE, 1000) == (
            2,
            0,
            [20.0, 10.0, 30.0, 30.0],
        )


def test_an_open_bucket_is_read_every_time(store: Store) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    cache = TrafficCache(ttl_s=3600)
    answered(store, "now", start + timedelta(seconds=1), 10.0)
    with store.engine.connect() as connection:
        assert cache.bucket(connection, "iris", start, start + MINUTE, 1000)[0] == 1
    answered(store, "next", start + timedelta(seconds=2), 10.0)
    with store.engine.connect() as connection:
        assert cache.bucket(connection, "iris", start, start + MINUTE, 1000)[0] == 2


def test_the_cache_keeps_at_most_its_bound(store: Store) -> None:
    cache = TrafficCache(ttl_s=3600, max_buckets=3)
    answered(store, "a", T0, 10.0)
    with store.engine.connect() as connection:
        for n in range(5):
            cache.bucket(connection, "iris", T0 + n * MINUTE, T0 + (n + 1) * MINUTE, 1000)
        assert len(cache) == 3
