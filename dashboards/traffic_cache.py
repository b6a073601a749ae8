"""Closed traffic buckets, kept briefly, so that a page refreshing every 10 s (or many people
watching one model) does not count the same past hour's million calls again each time.

A bucket is closed once its end is `CLOSED_AFTER_S` in the past; its figures are then kept for
`TTL_S`, so a call stored late with a time inside a closed bucket shows within that time, as
late calls do in the counts of `GET /models`. Open buckets are always read afresh.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Connection

from monitor.store import traffic_read

CLOSED_AFTER_S = 60.0
TTL_S = 30.0
MAX_BUCKETS = 20_000  # a few hundred bytes each

Figures = tuple[int, int, list[float | None]]


class TrafficCache:
    def __init__(self, ttl_s: float = TTL_S, max_buckets: int = MAX_BUCKETS) -> None:
        self._ttl_s = ttl_s
        self._max_buckets = max_buckets
        self._kept: OrderedDict[tuple[str, datetime, datetime, int], tuple[float, Figures]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def bucket(
        self, connection: Connection, model: str, start: datetime, end: datetime, sample: int
    ) -> Figures:
        """`traffic_read.bucket`'s figures for [start, end), from the cache when closed."""
        closed = end <= datetime.now(UTC) - timedelta(seconds=CLOSED_AFTER_S)
        key = (model, start, end, sample)
        now = time.monotonic()
        with self._lock:
            kept = self._kept.get(key)
        if closed and kept is not None and now - kept[0] < self._ttl_s:
            return kept[1]
        figures = traffic_read.bucket(connection, model, start, end, sample)
        if closed:
            with self._lock:
                self._kept[key] = (now, figures)
                self._kept.move_to_end(key)
                while len(self._kept) > self._max_buckets:
                    self._kept.popitem(last=False)
        return figures
