"""A database down when the monitor starts is waited for, as a later outage is: the monitor
keeps running, not ready, logs the wait at most once every few seconds with a count, and
starts consuming once the database answers."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.fixtures.databases import postgresql_database_url
from tests.fixtures.infermon_process import AdminProcess
from tests.fixtures.processes import free_port, http_ok
from tests.fixtures.tcp_proxy import CuttableTcpProxy
from tests.monitor.consumer_helpers import TEST_GROUP_FLAGS

# The monitor's retries back off 0.5, 1, 2 s...: four failed attempts take ~3.5 s.
ATTEMPTS_TO_WATCH = 4
# The waiting line's interval (infermon.throttled_log): at most one per this many seconds.
WAITING_LOG_INTERVAL_S = 5.0
RETRIES = "infermon_monitor_write_retries_total"


@pytest.fixture
def postgresql_behind_a_cut() -> Iterator[tuple[str, CuttableTcpProxy]]:
    """A fresh PostgreSQL database's URL through a relay that starts cut (the server "down")."""
    for database_url in postgresql_database_url():
        url = make_url(database_url)
        proxy = CuttableTcpProxy(url.host or "127.0.0.1", url.port or 5432)
        proxy.cut()
        try:
            through = url.set(host="127.0.0.1", port=proxy.port)
            yield through.render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


def start_monitor(bootstrap: str, topic: str, database_url: str) -> AdminProcess:
    admin_port = free_port()
    argv = [
        sys.executable, "-m", "infermon.cli", "monitor", "--kafka-bootstrap", bootstrap,
        "--topic", topic, "--database-url", database_url, "--admin-host", "127.0.0.1",
        "--admin-port", str(admin_port), *TEST_GROUP_FLAGS,
    ]  # fmt: skip
    return AdminProcess("infermon-monitor", argv, admin_port, {})


def waiting_lines(monitor: AdminProcess) -> list[str]:
    log = monitor.process.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log
    return [line for line in log.splitlines() if "store unavailable" in line]


@pytest.mark.slow
def test_a_database_down_at_start_is_waited_for_then_used(
    kafka_bootstrap: str, postgresql_behind_a_cut: tuple[str, CuttableTcpProxy]
) -> None:
    database_url, proxy = postgresql_behind_a_cut
    with start_monitor(kafka_bootstrap, "start-outage", database_url) as monitor:
        monitor.process.wait_until(lambda: http_ok(f"{monitor.admin_url}/healthz"), 30, "health")
        started = time.monotonic()
        monitor.wait_for_metrics(
            lambda m: m.get(RETRIES, 0) >= ATTEMPTS_TO_WATCH, 30, "retries while down"
        )
        waited_s = time.monotonic() - started
        assert monitor.running()
        assert httpx.get(f"{monitor.admin_url}/readyz").status_code == 503
        lines = waiting_lines(monitor)
        assert 1 <= len(lines) <= 2 + waited_s / WAITING_LOG_INTERVAL_S, lines
        assert "failed attempt(s)" in lines[0]
        proxy.restore()
        monitor.wait_ready()  # the schema migrated, consuming
        assert monitor.terminate() == 0


def test_a_database_that_never_answers_is_waited_for_until_stopped(kafka_bootstrap: str) -> None:
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/infermon"
    with start_monitor(kafka_bootstrap, "never-up", unreachable) as monitor:
        monitor.process.wait_until(lambda: http_ok(f"{monitor.admin_url}/healthz"), 30, "health")
        monitor.wait_for_metrics(lambda m: m.get(RETRIES, 0) >= 2, 30, "retries")
        assert monitor.running()
        assert monitor.terminate(10) == 0
        assert waiting_lines(monitor)
