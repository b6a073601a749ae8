"""Running `infermon monitor` against a real broker and database, and waiting on the store."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.store.store import Store
from tests.fixtures.infermon_process import AdminProcess
from tests.fixtures.processes import free_port

# Low group timeouts: a new group's first record comes ~3 s after joining on tansu instead
# of ~23 s with librdkafka's defaults.
TEST_GROUP_FLAGS = ("--session-timeout-ms", "6000", "--kafka-config", "max.poll.interval.ms=10000")


class MonitorProcess(AdminProcess):
    """`infermon monitor` as a child process, with its admin port."""

    def __init__(self, argv: list[str], admin_port: int) -> None:
        super().__init__("infermon-monitor", argv, admin_port, {})
        self.wait_ready()


# Drift detection on a short clock: windows settle in 1 s and are looked for every 0.3 s.
FAST_DETECTION = ("--window-settle-s", "1", "--detection-poll-s", "0.3",
                  "--window-late-check-s", "0.5", "--window-lease-s", "2")  # fmt: skip


def detection_config(folder: Path, instances: int = 200) -> Path:
    """A detection config: the model's first `instances` as its reference, then windows of
    `instances`."""
    path = folder / "detection.yaml"
    path.write_text(f"defaults:\n  reference: {{first: {instances}}}\n"
                    f"  window: {{instances: {instances}}}\n")  # fmt: skip
    return path


def start_detecting_monitor(
    bootstrap: str, topic: str, database_url: str, config: Path
) -> MonitorProcess:
    """A monitor with drift detection by `config`, on FAST_DETECTION's clock."""
    return start_monitor(bootstrap, topic, database_url, "--config", str(config), *FAST_DETECTION)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """`check()`'s first true value, looked for every 0.3 s."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout_s} s"
        time.sleep(0.3)
    return found


def group_of(topic: str) -> str:
    """Each test's monitors in a group of their topic's own: a member another test left
    behind (its session not yet expired) can hold no partition this test waits for."""
    return f"group-{topic}"


def start_monitor(
    bootstrap: str, topic: str, database_url: str, *extra: str, group: str | None = None
) -> MonitorProcess:
    admin_port = free_port()
    argv = [
        sys.executable, "-m", "infermon.cli", "monitor", "--kafka-bootstrap", bootstrap,
        "--topic", topic, "--group", group or group_of(topic), "--database-url", database_url,
        "--admin-host", "127.0.0.1", "--admin-port", str(admin_port), *TEST_GROUP_FLAGS, *extra,
    ]  # fmt: skip
    return MonitorProcess(argv, admin_port)


def wait_for_stats(
    store: Store,
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float = 60.0,
    writer: AdminProcess | None = None,
) -> dict[str, Any]:
    """The store's stats once `done(stats)` holds; the last stats in the assertion otherwise,
    with the log tail of the `writer` that should have got it there."""
    deadline = time.monotonic() + timeout_s
    stats = store.stats()
    while not done(stats):
        if time.monotonic() >= deadline:
            log = f"\n{writer.log_tail()}" if writer else ""
            raise AssertionError(f"store did not get there in {timeout_s} s: {stats}{log}")
        time.sleep(0.5)
        stats = store.stats()
    return stats
