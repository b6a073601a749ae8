"""Running `infermon monitor` against a real broker and database, and waiting on the store."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from monitor.store.store import Store
from tests.fixtures.infermon_process import AdminProcess
from tests.fixtures.processes import free_port

# Low group timeouts: a new group's first record comes ~3 s after joining on tansu instead
# of ~23 s with librdkafka's defaults.
TEST_GROUP = "test-monitor"
TEST_GROUP_FLAGS = ("--session-timeout-ms", "6000", "--kafka-config", "max.poll.interval.ms=10000")


class MonitorProcess(AdminProcess):
    """`infermon monitor` as a child process, with its admin port."""

    def __init__(self, argv: list[str], admin_port: int) -> None:
        super().__init__("infermon-monitor", argv, admin_port, {})
        self.wait_ready()


def start_monitor(
    bootstrap: str, topic: str, database_url: str, *extra: str, group: str = TEST_GROUP
) -> MonitorProcess:
    admin_port = free_port()
    argv = [
        sys.executable, "-m", "infermon.cli", "monitor", "--kafka-bootstrap", bootstrap,
        "--topic", topic, "--group", group, "--database-url", database_url,
        "--admin-host", "127.0.0.1", "--admin-port", str(admin_port), *TEST_GROUP_FLAGS, *extra,
    ]  # fmt: skip
    return MonitorProcess(argv, admin_port)


def wait_for_stats(
    store: Store, done: Callable[[dict[str, Any]], bool], timeout_s: float = 60.0
) -> dict[str, Any]:
    """The store's stats once `done(stats)` holds; the last stats in the assertion otherwise."""
    deadline = time.monotonic() + timeout_s
    stats = store.stats()
    while not done(stats):
        assert time.monotonic() < deadline, f"store did not get there in {timeout_s} s: {stats}"
        time.sleep(0.5)
        stats = store.stats()
    return stats
