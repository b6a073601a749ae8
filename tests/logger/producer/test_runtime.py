"""The runtime builds the spool and its quarantine from the settings."""

from __future__ import annotations

from pathlib import Path

from logger.producer.runtime import SinkRuntime
from logger.producer.spool import SpooledRecord, read_quarantine
from logger.settings import LoggerSettings


def test_the_quarantine_holds_at_most_quarantine_max_bytes(tmp_path: Path) -> None:
    settings = LoggerSettings(
        spool_dir=str(tmp_path), quarantine_max_bytes=3000, kafka_bootstrap="127.0.0.1:9"
    )
    runtime = SinkRuntime(settings)
    assert runtime.spool is not None
    record = SpooledRecord("events", b"k", b"v" * 1000, ())
    try:
        assert [runtime.spool.quarantine(record, "refused") for _ in range(3)] == [
            True,
            True,
            False,
        ]
    finally:
        runtime.spool.close()
    assert len(list(read_quarantine(tmp_path))) == 2
