"""A model's row counts without counting a million rows per request.

Counting a model's 1M instances takes 80-200 ms on either database (an index scan of every
entry), too slow for `GET /models`. So each (table, model) is counted once up to its newest
time T, in full; a request adds only the rows after T, a short range of the time index. The
full count is redone in the background when it is older than `refresh_s` or the rows after T
grow past `max_live_rows`. A call stored late with a time before T is counted at that next
refresh: the counts may lag by up to `refresh_s` for late calls, never for new ones.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from monitor.store import api_read
from monitor.store.api_read import CountedTable

log = logging.getLogger(__name__)

REFRESH_S = 30.0
MAX_LIVE_ROWS = 50_000


@dataclass(frozen=True, slots=True)
class _FullCount:
    through: datetime | None  # rows with times up to this one; None: the table had none
    rows: int
    counted_at: float  # time.monotonic()


class ModelCounts:
    """Exact counts of a model's rows, as of the last full count for late rows."""

    def __init__(
        self, engine: Engine, refresh_s: float = REFRESH_S, max_live_rows: int = MAX_LIVE_ROWS
    ) -> None:
        self._engine = engine
        self._refresh_s = refresh_s
        self._max_live_rows = max_live_rows
        self._full: dict[tuple[CountedTable, str], _FullCount] = {}
        self._refreshing: set[tuple[CountedTable, str]] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-counts")

    def count(self, connection: Connection, table: CountedTable, model: str) -> int:
        key = (table, model)
        full = self._full.get(key)
        if full is None:  # the first time: counted now, on the request's connection
            full = self._count_all(connection, table, model)
            self._full[key] = full
        live = api_read.count_rows(connection, table, model, after=full.through)
        stale = time.monotonic() - full.counted_at > self._refresh_s
        if stale or live > self._max_live_rows:
            self._refresh_later(key)
        return full.rows + live

    @staticmethod
    def _count_all(connection: Connection, table: CountedTable, model: str) -> _FullCount:
        started = time.monotonic()
        through = api_read.newest_time(connection, table, model)
        rows = (
            0 if through is None else api_read.count_rows(connection, table, model, None, through)
        )
        return _FullCount(through, rows, started)

    def _refresh_later(self, key: tuple[CountedTable, str]) -> None:
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)
        try:
            self._executor.submit(self._refresh, key)
        except RuntimeError:  # shut down: the app is stopping
            with self._lock:
                self._refreshing.discard(key)

    def _refresh(self, key: tuple[CountedTable, str]) -> None:
        try:
            with self._engine.connect() as connection:
                self._full[key] = self._count_all(connection, *key)
        except SQLAlchemyError as error:  # the next request tries again
            log.warning("recounting %s of model %r failed: %s", key[0], key[1], error)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
