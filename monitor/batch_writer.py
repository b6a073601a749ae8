"""One batch written in a background thread while the consumer reads and decodes the next.

PostgreSQL does most of a write in its own server process while the client waits without
the GIL, so reading the next batch overlaps it. SQLite works inside our process, and there
the threads' handing the GIL back and forth cost more than the overlap saved (25.8k against
28.2k events/s, bench/monitor_throughput.py): `in_background=False` writes in the caller.
At most one batch is in flight, and the consumer collects it before sending the next, so
batches are stored, and their offsets stored, in the order they were read.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Batch = TypeVar("Batch")


class BatchWriter(Generic[Batch]):
    def __init__(self, write: Callable[[Batch], None], *, in_background: bool = True) -> None:
        self._write = write
        self.in_background = in_background
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._in_flight: tuple[Batch, Future[None]] | None = None

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def submit(self, batch: Batch) -> None:
        """Starts writing `batch`; the one before must have been collected."""
        if self._in_flight is not None:
            raise RuntimeError("collect the batch in flight before submitting another")
        if self.in_background:
            self._in_flight = (batch, self._executor.submit(self._write, batch))
            return
        written: Future[None] = Future()
        try:
            self._write(batch)
            written.set_result(None)
        except Exception as error:  # handed to `collect`, as from the background
            written.set_exception(error)
        self._in_flight = (batch, written)

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
