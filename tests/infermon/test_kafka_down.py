"""Kafka down: every component keeps running, says it is not ready, and logs the outage at
most once every few seconds per kind of trouble; when a broker comes, it is ready."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fixtures.factories import TansuFactory
from tests.fixtures.infermon_process import AdminProcess
from tests.fixtures.processes import free_port, http_ok

COMPONENT_ARGS = {
    "logger": ("--port", "0", "--spool-dir", "{tmp}/spool"),
    "ingest": ("--port", "0", "--spool-dir", "{tmp}/spool"),
    "trigger": ("--input-topic", "in", "--output-topic", "out", "--spool-dir", "{tmp}/spool"),
    "monitor": ("--database-url", "sqlite:///{tmp}/infermon.db"),
}
# librdkafka retries a refused connection many times a second; over this window the log
# must stay short. Before throttling the monitor alone wrote ~40 lines a second.
OUTAGE_WINDOW_S = 6.0
MAX_LINES_IN_WINDOW = 12
# Reconnecting waits out librdkafka's backoff (up to 10 s) and the sink's probe backoff.
RECOVERY_TIMEOUT_S = 45.0


def readiness(admin_url: str) -> int:
    return httpx.get(f"{admin_url}/readyz", timeout=2).status_code


def log_lines(component: AdminProcess) -> int:
    return len(component.process.log_path.read_text(errors="replace").splitlines())


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, component: AdminProcess
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert component.running(), f"it exited:\n{component.log_tail()}"
        assert time.monotonic() < deadline, f"{what} in {timeout_s} s:\n{component.log_tail()}"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMPONENT_ARGS))
def test_kafka_down_is_not_ready_and_quiet_until_a_broker_comes(
    command: str, tmp_path: Path, tansu_factory: TansuFactory
) -> None:
    kafka_port, admin_port = free_port(), free_port()
    argv = [
        sys.executable, "-m", "infermon.cli", command,
        *(arg.format(tmp=tmp_path) for arg in COMPONENT_ARGS[command]),
        "--kafka-bootstrap", f"127.0.0.1:{kafka_port}",
        "--admin-host", "127.0.0.1", "--admin-port", str(admin_port),
    ]  # fmt: skip
    with AdminProcess(f"infermon-{command}", argv, admin_port, {}) as component:
        url = component.admin_url
        wait_until(lambda: http_ok(f"{url}/healthz"), 30, "no health", component)
        wait_until(lambda: readiness(url) == 503, 10, "still ready", component)
        lines_before = log_lines(component)
        window_ends = time.monotonic() + OUTAGE_WINDOW_S
        while time.monotonic() < window_ends:  # a window to watch, not a wait for a condition
            assert readiness(url) == 503, component.log_tail()
            time.sleep(0.2)
        assert component.running(), component.log_tail()
        logged = log_lines(component) - lines_before
        assert logged <= MAX_LINES_IN_WINDOW, component.log_tail()
        tansu_factory(kafka_port)
        wait_until(lambda: readiness(url) == 200, RECOVERY_TIMEOUT_S, "not ready", component)
        assert component.terminate() == 0, component.log_tail()
