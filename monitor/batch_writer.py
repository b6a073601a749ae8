"""One batch written in a background thread while the consumer reads and decodes the next.

The database's own work runs without the GIL: PostgreSQL's in its server process while the
client waits, SQLite's inside `sqlite3_step` and the WAL writes. Reading and decoding the next
batch meanwhile overlaps it (SQLite: 31.5k against 25-26k events/s written in the caller,
bench/monitor_throughput.py, with the monitor's short GIL switch interval; without that
interval the overlap was lost to GIL hand-offs).
At most one batch is in flight, and the consumer collects it before sending the next, so
batches are stored, and their offsets stored, in the order they were read.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Batch = TypeVar("Batch")


class BatchWriter(Generic[Batch]):
    def __init__(self, write: Callable[[Batch], None]) -> None:
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._in_flight: tuple[Batch, Future[None]] | None = None

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def submit(self, batch: Batch) -> None:
        """Starts writing `batch`; the one before must have been collected."""
        if self._in_flight is not None:
            raise RuntimeError("collect the batch in flight before submitting another")
        self._in_flight = (batch, self._executor.submit(self._write, batch))

    def collect(self) -> tuple[Batch, BaseException | None] | None:
        """Waits for the batch in flight: (batch, None) once stored, (batch, error) when the
        write failed, None when nothing was in flight."""
        if self._in_flight is None:
            return None
        batch, future = self._in_flight
        self._in_flight = None
        return batch, future.exception()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
