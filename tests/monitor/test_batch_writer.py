"""The background writer: one batch in flight, results and errors handed back in order."""

from __future__ import annotations

import threading

import pytest

from monitor.batch_writer import BatchWriter


def test_batches_are_written_and_collected_in_order() -> None:
    written: list[int] = []
    writer = BatchWriter(written.append)
    collected = []
    for batch in range(5):
        writer.submit(batch)
        collected.append(writer.collect())
    writer.close()

    assert written == [0, 1, 2, 3, 4]
    assert collected == [(batch, None) for batch in range(5)]
    assert writer.collect() is None


def test_a_failed_write_is_handed_back_with_its_batch() -> None:
    def fail(batch: str) -> None:
        raise ConnectionError(f"database down for {batch}")

    writer = BatchWriter(fail)
    writer.submit("b1")
    batch, error = writer.collect() or (None, None)
    writer.close()

    assert batch == "b1"
    assert isinstance(error, ConnectionError) and "b1" in str(error)


def test_the_write_runs_while_the_caller_goes_on_and_only_one_is_in_flight() -> None:
    release = threading.Event()
    writer = BatchWriter(lambda _batch: release.wait(5))
    writer.submit(1)
    assert writer.busy  # the caller is back while the write waits

    with pytest.raises(RuntimeError, match="collect"):
        writer.submit(2)
    release.set()
    assert writer.collect() == (1, None)
    assert not writer.busy
    writer.close()
