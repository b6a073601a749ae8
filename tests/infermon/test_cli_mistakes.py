"""Every mistake a user can make at start-up is a line or two that says what to do, exit 2.

Each runs the real `infermon` command in a child process, as a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.store.store import Store
from tests.fixtures.infermon_process import InfermonProcess
from tests.fixtures.processes import REPO_ROOT, free_port, port_open

# The message, and at most a line saying where to find every option.
MAX_MESSAGE_LINES = 2
CLOSED_KAFKA = "127.0.0.1:9"  # nothing listens there; no test here needs a broker to answer


def infermon(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infermon.cli", *args],
        stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, timeout=60,
        check=False, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit code 2, no traceback, a short message holding every `expected` text."""
    message = result.stderr.strip()
    assert result.returncode == 2, message
    assert "Traceback" not in message
    assert 0 < len(message.splitlines()) <= MAX_MESSAGE_LINES, message
    for text in expected:
        assert text in message, message


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, on every address."""
    with socket.create_server(("0.0.0.0", 0)) as taken:
        yield taken.getsockname()[1]


# --- ports ---
def test_the_loggers_port_in_use_names_port(taken_port: int, tmp_path: Path) -> None:
    result = infermon(
        "logger", "--port", str(taken_port), "--admin-port", str(free_port()),
        "--spool-dir", str(tmp_path), "--kafka-bootstrap", CLOSED_KAFKA,
    )  # fmt: skip
    assert_refused(result, f"port {taken_port} is in use", "--port")


def test_the_ingests_port_in_use_names_port(taken_port: int, tmp_path: Path) -> None:
    result = infermon(
        "ingest", "--port", str(taken_port), "--admin-port", str(free_port()),
        "--spool-dir", str(tmp_path), "--kafka-bootstrap", CLOSED_KAFKA,
    )  # fmt: skip
    assert_refused(result, f"port {taken_port} is in use", "--port")


ADMIN_PORT_COMMANDS = {
    "logger": ("--port", "0", "--spool-dir", "{tmp}"),
    "ingest": ("--port", "0", "--spool-dir", "{tmp}"),
    "trigger": ("--input-topic", "in", "--output-topic", "out", "--spool-dir", "{tmp}"),
    "monitor": ("--database-url", "sqlite:///{tmp}/infermon.db"),
}


@pytest.mark.parametrize("command", sorted(ADMIN_PORT_COMMANDS))
def test_an_admin_port_in_use_names_admin_port(
    command: str, taken_port: int, tmp_path: Path
) -> None:
    args = [arg.format(tmp=tmp_path) for arg in ADMIN_PORT_COMMANDS[command]]
    result = infermon(
        command, *args, "--admin-port", str(taken_port), "--kafka-bootstrap", CLOSED_KAFKA
    )
    assert_refused(result, f"port {taken_port} is in use", "--admin-port")


# --- databases ---
@pytest.mark.parametrize("command", ["monitor", "counts", "db upgrade"])
def test_a_path_for_a_database_url_shows_what_a_url_looks_like(command: str) -> None:
    result = infermon(*command.split(), "--database-url", "infermon.db")
    assert_refused(result, "--database-url", "sqlite:///infermon.db", "postgresql+psycopg://")


def test_counts_never_creates_a_database(tmp_path: Path) -> None:
    database = tmp_path / "not-yet" / "infermon.db"
    result = infermon("counts", "--database-url", f"sqlite:///{database}")
    assert_refused(result, f"no database at {database}", "infermon db upgrade")
    assert not database.parent.exists()


def test_counts_on_a_database_without_the_schema_says_to_upgrade(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        Path(database_url.removeprefix("sqlite:///")).touch()  # there, but empty
    result = infermon("counts", "--database-url", database_url)
    assert_refused(result, "no infermon schema", "infermon db upgrade")


def test_counts_prints_the_row_counts_and_stats_still_does(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'infermon.db'}"
    with Store(database_url) as store:
        store.upgrade()
    counts = infermon("counts", "--database-url", database_url)
    assert counts.returncode == 0, counts.stderr
    assert '"inferences": 0' in counts.stdout
    old_name = infermon("stats", "--database-url", database_url)
    assert (old_name.returncode, old_name.stdout) == (0, counts.stdout)
    assert "`stats` is now `counts`" in old_name.stderr


def test_output_cut_short_ends_quietly(tmp_path: Path) -> None:
    """`infermon counts | head -c1`, made certain: the reader is gone before the first write."""
    database_url = f"sqlite:///{tmp_path / 'infermon.db'}"
    with Store(database_url) as store:
        store.upgrade()
    for args in (("counts", "--database-url", database_url), ("logger", "--help")):
        reader, writer = os.pipe()
        os.close(reader)
        try:
            result = infermon(*args, stdout=writer)
        finally:
            os.close(writer)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""


# --- spools ---
def test_a_spool_folder_that_cannot_be_made_names_spool_dir(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = infermon(
        "logger", "--port", "0", "--admin-port", "0", "--spool-dir", str(a_file / "spool"),
        "--kafka-bootstrap", CLOSED_KAFKA,
    )  # fmt: skip
    assert_refused(result, str(a_file / "spool"), "--spool-dir")


def test_a_spool_held_by_another_process_names_spool_dir(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    spool = tmp_path / "shared-spool"
    with InfermonProcess("logger", ["--kafka-bootstrap", kafka_bootstrap], spool_dir=spool):
        result = infermon(
            "ingest", "--port", "0", "--admin-port", "0", "--spool-dir", str(spool),
            "--kafka-bootstrap", kafka_bootstrap,
        )  # fmt: skip
    assert_refused(result, "in use by another process", "--spool-dir")


# --- options ---
def test_trigger_without_its_topics_names_both_flags() -> None:
    result = infermon("trigger", "--kafka-bootstrap", CLOSED_KAFKA)
    assert_refused(result, "missing --input-topic, --output-topic", "infermon trigger --help")
    assert "pydantic" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("logger", "--sample-rate", "1.5"), "--sample-rate '1.5'"),
        (("logger", "--port", "many"), "--port 'many'"),
        (("ingest", "--no-such-flag", "1"), "--no-such-flag"),
        (("monitor", "--batch-max-events", "0"), "--batch-max-events '0'"),
    ],
    ids=["out of range", "not a number", "unknown flag", "monitor: not positive"],
)
def test_a_bad_value_is_one_line_under_its_flag(args: tuple[str, ...], expected: str) -> None:
    assert_refused(infermon(*args), expected)


# --- infermon up ---
def test_up_with_a_bad_model_url_starts_nothing(tmp_path: Path) -> None:
    broker_port = free_port()
    result = infermon(
        "up", "--model-url", "ftp://model", "--broker-port", str(broker_port),
        "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert_refused(result, "--model-url 'ftp://model'", "http://host")
    assert not port_open("127.0.0.1", broker_port)
    assert not (tmp_path / "data").exists()


def test_up_with_a_port_in_use_names_its_flag(taken_port: int, tmp_path: Path) -> None:
    ports = ["--broker-port", "--logger-port", "--logger-admin-port", "--ingest-admin-port",
             "--monitor-admin-port", "--dashboard-port"]  # fmt: skip
    args = [f"{flag}={free_port()}" for flag in ports]
    result = infermon(
        "up", *args, "--ingest-port", str(taken_port), "--data-dir", str(tmp_path / "data")
    )
    assert_refused(result, f"port {taken_port} is in use", "--ingest-port")


def test_up_refuses_a_dashboard_port_in_use_before_starting_anything(
    taken_port: int, tmp_path: Path
) -> None:
    ports = ["--broker-port", "--logger-port", "--ingest-port", "--logger-admin-port",
             "--ingest-admin-port", "--monitor-admin-port"]  # fmt: skip
    free = {flag: free_port() for flag in ports}
    args = [f"{flag}={port}" for flag, port in free.items()]
    result = infermon(
        "up", *args, "--dashboard-port", str(taken_port), "--data-dir", str(tmp_path / "data")
    )
    assert_refused(result, f"port {taken_port} is in use", "--dashboard-port")
    assert [flag for flag, port in free.items() if port_open("127.0.0.1", port)] == []
    assert not (tmp_path / "data" / "infermon.db").exists()


def test_up_refuses_a_broker_port_in_use(taken_port: int, tmp_path: Path) -> None:
    ports = ["--logger-port", "--ingest-port", "--logger-admin-port", "--ingest-admin-port",
             "--monitor-admin-port", "--dashboard-port"]  # fmt: skip
    args = [f"{flag}={free_port()}" for flag in ports]
    result = infermon("up", *args, "--broker-port", str(taken_port), "--data-dir", str(tmp_path))
    assert_refused(result, f"port {taken_port} is in use", "--broker-port", "--kafka-bootstrap")


def test_up_refuses_one_port_for_two_components(tmp_path: Path) -> None:
    port = str(free_port())
    result = infermon(
        "up", "--logger-port", port, "--ingest-admin-port", port, "--data-dir", str(tmp_path)
    )
    assert_refused(result, f"--logger-port and --ingest-admin-port are both {port}")
