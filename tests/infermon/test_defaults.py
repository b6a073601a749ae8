"""Defaults that never collide: every component started with its defaults from one directory
on one host runs beside the others, each on its own ports, with its own spool under one data
directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infermon import defaults, events
from logger.settings import IngestSettings, LoggerSettings
from monitor.settings import MonitorSettings
from tests.fixtures.factories import TopicFactory
from tests.fixtures.processes import REPO_ROOT, ServerProcess, http_ok, port_open
from tests.monitor.consumer_helpers import TEST_GROUP_FLAGS
from trigger.settings import TriggerSettings

# Each component's ports with its defaults: (command, what, port).
DEFAULT_PORTS = (
    ("logger", "port", defaults.LOGGER_PORT),
    ("logger", "admin port", defaults.LOGGER_ADMIN_PORT),
    ("ingest", "port", defaults.INGEST_PORT),
    ("ingest", "admin port", defaults.INGEST_ADMIN_PORT),
    ("trigger", "admin port", defaults.TRIGGER_ADMIN_PORT),
    ("monitor", "admin port", defaults.MONITOR_ADMIN_PORT),
)
_START_TIMEOUT_S = 30.0


@pytest.fixture
def no_infermon_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment without INFERMON_ variables, so that only the defaults apply."""
    for name in os.environ:
        if name.startswith("INFERMON_"):
            monkeypatch.delenv(name)
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_no_two_components_share_a_port_or_a_spool(no_infermon_environment: object) -> None:
    logger, ingest = LoggerSettings(), IngestSettings()
    trigger = TriggerSettings(input_topic="in", output_topic="out")
    monitor = MonitorSettings()
    ports = [
        logger.port, logger.admin_port, ingest.port, ingest.admin_port, trigger.admin_port,
        monitor.admin_port, defaults.KAFKA_PORT,
    ]  # fmt: skip
    assert len(set(ports)) == len(ports), ports
    assert ports == [port for _, _, port in DEFAULT_PORTS] + [defaults.KAFKA_PORT]
    spools = [settings.spool_path for settings in (logger, ingest, trigger)]
    data_dir = Path(defaults.DATA_DIR)
    assert spools == [data_dir / "spool" / name for name in ("logger", "ingest", "trigger")]
    assert monitor.database_url == f"sqlite:///{data_dir / 'infermon.db'}"


def test_the_data_dir_moves_every_file_and_an_explicit_choice_wins(
    no_infermon_environment: object, tmp_path: Path
) -> None:
    assert LoggerSettings(data_dir=str(tmp_path)).spool_path == tmp_path / "spool" / "logger"
    assert MonitorSettings(data_dir=str(tmp_path)).database_url == (
        f"sqlite:///{tmp_path / 'infermon.db'}"
    )
    assert LoggerSettings(spool_dir=str(tmp_path / "mine")).spool_path == tmp_path / "mine"
    assert IngestSettings(spool_dir="").spool_path is None, "empty: no spool"
    assert MonitorSettings(database_url="sqlite:///x.db").database_url == "sqlite:///x.db"


def test_the_dead_letter_topics_follow_the_topics(no_infermon_environment: object) -> None:
    assert MonitorSettings(topic="calls").dead_letter_topic == "calls.dlq"
    assert TriggerSettings(input_topic="in", output_topic="out").dead_letter_topic == "in.dlq"


@pytest.fixture
def default_ports_free() -> None:
    for command, what, port in DEFAULT_PORTS:
        if port_open("127.0.0.1", port):
            pytest.skip(f"127.0.0.1:{port}, the {command}'s default {what}, is in use here")


@pytest.fixture
def components(
    no_infermon_environment: dict[str, str],
    default_ports_free: None,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    tmp_path: Path,
) -> Iterator[dict[str, ServerProcess]]:
    """logger, ingest, trigger and monitor from one working directory, with their defaults:
    only the broker and the topics are named (topics of this test's own)."""
    payloads, requests, answers = new_topic(), new_topic(), new_topic()
    kafka = ("--kafka-bootstrap", kafka_bootstrap)
    argv = {
        "logger": ("--topic", payloads),
        "ingest": ("--topic", payloads),
        "trigger": ("--log-topic", payloads, "--input-topic", requests, "--output-topic", answers),
        # Short group timeouts, so that it stores the call below within seconds.
        "monitor": ("--topic", payloads, *TEST_GROUP_FLAGS),
    }
    started: dict[str, ServerProcess] = {}
    try:
        for command, args in argv.items():
            started[command] = ServerProcess(
                f"infermon-{command}",
                [sys.executable, "-m", "infermon.cli", command, *kafka, *args],
                cwd=tmp_path,
                env=no_infermon_environment,
            )
        yield started
    finally:
        for process in started.values():
            process.stop()


def test_logger_ingest_trigger_and_monitor_run_together_on_their_defaults(
    components: dict[str, ServerProcess], no_infermon_environment: dict[str, str], tmp_path: Path
) -> None:
    admin_ports = {command: port for command, what, port in DEFAULT_PORTS if what == "admin port"}
    for command, process in components.items():
        ready = f"http://127.0.0.1:{admin_ports[command]}/readyz"
        process.wait_until(lambda url=ready: http_ok(url), _START_TIMEOUT_S, "readiness")
    data_dir = tmp_path / defaults.DATA_DIR
    assert sorted(path.name for path in (data_dir / "spool").iterdir()) == [
        "ingest", "logger", "trigger",
    ]  # fmt: skip
    assert [path.name for path in tmp_path.iterdir()] == [defaults.DATA_DIR], "nothing else"

    # A call through the ingest endpoint reaches the monitor's default store, which
    # `infermon stats` reads with its own defaults.
    headers = {
        "Ce-Specversion": "1.0", "Ce-Id": "together-1", "Ce-Source": "http://test/",
        "Ce-Type": events.KSERVE_REQUEST_TYPE, "Content-Type": "application/json",
    }  # fmt: skip
    answer = httpx.post(
        f"http://127.0.0.1:{defaults.INGEST_PORT}/",
        headers=headers,
        json={"instances": [[1.0, 2.0]]},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    stats = _wait_for_stored_events(tmp_path, no_infermon_environment, 1)
    assert stats["events"] == 1
    assert (data_dir / defaults.DATABASE_FILE).is_file()
    for command, process in components.items():
        assert process.running(), f"{command} died:\n{process.log_tail()}"


def _wait_for_stored_events(cwd: Path, env: dict[str, str], events: int) -> dict[str, int]:
    """`infermon stats` from `cwd`, with its defaults, once it counts `events` events."""
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            [sys.executable, "-m", "infermon.cli", "stats"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        stats: dict[str, int] = json.loads(done.stdout)
        if stats["events"] >= events:
            return stats
        assert time.monotonic() < deadline, f"the default store holds {stats}"
        time.sleep(0.2)
