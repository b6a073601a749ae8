"""`infermon up`: the README's run command, with its embedded broker, end to end: a call
through its logger ends up stored by its monitor; Ctrl-C in a terminal stops it all, quickly
and quietly; an external broker instead of the embedded one; two `up`s side by side."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from monitor.store.store import Store
from tests.fixtures.broker import read_topic
from tests.fixtures.processes import REPO_ROOT, ServerProcess, free_port, http_ok, port_open
from tests.fixtures.toy_model_server import ToyModelServer

ADMIN_PORTS = ("logger-admin", "ingest-admin", "monitor-admin", "dashboard")
# What the issue asks of Ctrl-C on `infermon up` in a terminal.
CTRL_C_STOP_S = 5.0
CTRL_C_MAX_LINES = 20
START_TIMEOUT_S = 60
# The broker, the monitor, the logger, ingest and the dashboard.
CHILDREN = 5


def up_argv(
    model_url: str, tmp_path: Path, *extra: str, embedded: bool = True
) -> tuple[list[str], dict[str, int]]:
    """`infermon up` on free ports, its data directory (spools, database) `tmp_path`."""
    names = (
        ("broker", "logger", "ingest", *ADMIN_PORTS)
        if embedded
        else ("logger", "ingest", *ADMIN_PORTS)
    )
    ports = {name: free_port() for name in names}
    argv = [
        sys.executable, "-m", "infermon.cli", "up", "--model-url", model_url,
        "--logger-port", str(ports["logger"]),
        "--ingest-port", str(ports["ingest"]), "--logger-admin-port", str(ports["logger-admin"]),
        "--ingest-admin-port", str(ports["ingest-admin"]), "--data-dir", str(tmp_path),
        "--topic", "up.payloads",
        "--monitor-admin-port", str(ports["monitor-admin"]),
        "--dashboard-port", str(ports["dashboard"]), *extra,
    ]  # fmt: skip
    if embedded:
        argv += ["--broker-port", str(ports["broker"])]
    return argv, ports


def all_ready(ports: dict[str, int]) -> bool:
    return all(http_ok(f"http://127.0.0.1:{ports[admin]}/readyz") for admin in ADMIN_PORTS)


def start_up(argv: list[str], name: str = "infermon-up") -> ServerProcess:
    return ServerProcess(
        name, argv, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    )


def stop_and_check_gone(up: ServerProcess, ports: dict[str, int]) -> None:
    """SIGTERM to `up` alone: it exits 0, its children are gone, none of its ports listens."""
    children = children_of(up.pid)
    assert len(children) == CHILDREN, up.log_tail()
    os.kill(up.pid, signal.SIGTERM)
    assert up.wait(45) == 0, up.log_tail()
    assert [pid for pid in children if alive(pid)] == []
    assert [name for name, port in ports.items() if port_open("127.0.0.1", port)] == []


def stored_models(database_url: str, expected: int, timeout_s: float = 30) -> dict[str, int]:
    """Inferences per model once `expected` are stored (or the timeout passed)."""
    with Store(database_url) as store:
        deadline = time.monotonic() + timeout_s
        while store.stats()["inferences"] < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        rows = (
            store.engine.connect()
            .exec_driver_sql("SELECT model, count(*) FROM inferences GROUP BY model")
            .all()
        )
    return {model: count for model, count in rows}


def test_up_logs_and_stores_calls_through_its_own_broker(
    toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    argv, ports = up_argv(toy_model_server.url, tmp_path)
    database_url = f"sqlite:///{tmp_path / 'infermon.db'}"  # the default, in --data-dir
    up = start_up(argv)
    try:
        up.wait_until(lambda: all_ready(ports), START_TIMEOUT_S, "readiness of every component")
        bootstrap = f"127.0.0.1:{ports['broker']}"
        answer = httpx.post(
            f"http://127.0.0.1:{ports['logger']}/v1/models/m:predict", json={"instances": [[2, 3]]}
        )
        assert answer.json() == {"predictions": [5.0]}
        events = read_topic(bootstrap, "up.payloads", 2, timeout_s=20)
        assert len(events) == 2
        with Store(database_url) as store:
            deadline = time.monotonic() + 30
            while store.stats()["inferences"] < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            stored = store.stats()
            instances = store.latest_instances("m")
        assert (stored["events"], stored["inferences"], stored["instances"]) == (2, 1, 1)
        assert instances[["f0", "f1", "prediction"]].values.tolist() == [[2, 3, 5.0]]
        assert_dashboard_takes_the_printed_token_only(up.log_tail(200), ports["dashboard"])
        stop_and_check_gone(up, ports)
    finally:
        up.stop()


def assert_dashboard_takes_the_printed_token_only(output: str, port: int) -> None:
    """The dashboard line names the page and the write token `up` made; writes need it."""
    found = re.search(
        rf"dashboard http://127\.0\.0\.1:{port}/ \(writes: Authorization: Bearer (\S+);", output
    )
    assert found, output
    feedback = f"http://127.0.0.1:{port}/api/v1/feedback"
    label = {"request_id": "r1", "label": 1}
    assert httpx.post(feedback, json=label).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert httpx.post(feedback, json=label, headers=wrong).status_code == 403
    right = {"Authorization": f"Bearer {found[1]}"}
    assert httpx.post(feedback, json=label, headers=right).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200  # the page


@pytest.mark.slow
def test_up_with_an_external_broker_starts_none_and_stops_cleanly(
    toy_model_server: ToyModelServer, kafka_bootstrap: str, new_topic: Callable[[], str],
    tmp_path: Path,
) -> None:  # fmt: skip
    topic = new_topic()
    argv, ports = up_argv(toy_model_server.url, tmp_path, "--kafka-bootstrap", kafka_bootstrap,
                          embedded=False)  # fmt: skip
    argv[argv.index("up.payloads")] = topic
    up = start_up(argv)
    try:
        up.wait_until(lambda: all_ready(ports), START_TIMEOUT_S, "readiness of every component")
        assert "embedded" not in up.log_tail(200)
        assert not (tmp_path / "broker.log").exists()
        answer = httpx.post(
            f"http://127.0.0.1:{ports['logger']}/v1/models/ext:predict",
            json={"instances": [[1, 1]]},
        )
        assert answer.json() == {"predictions": [2.0]}
        events = read_topic(kafka_bootstrap, topic, 2, timeout_s=20)
        assert [event.key() for event in events] == [events[0].key()] * 2
        children = children_of(up.pid)
        assert len(children) == CHILDREN - 1, up.log_tail()  # no broker
        os.kill(up.pid, signal.SIGTERM)
        assert up.wait(45) == 0, up.log_tail()
        assert [pid for pid in children if alive(pid)] == []
        assert [name for name, port in ports.items() if port_open("127.0.0.1", port)] == []
        # The external broker is still there, untouched.
        assert len(read_topic(kafka_bootstrap, topic, 2, timeout_s=20)) == 2
    finally:
        up.stop()


@pytest.mark.slow
def test_two_ups_in_two_directories_do_not_disturb_each_other(
    toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    first_argv, first_ports = up_argv(toy_model_server.url, tmp_path / "first")
    second_argv, second_ports = up_argv(toy_model_server.url, tmp_path / "second")
    first, second = start_up(first_argv, "up-first"), start_up(second_argv, "up-second")
    try:
        for up, ports in ((first, first_ports), (second, second_ports)):
            up.wait_until(lambda ports=ports: all_ready(ports), START_TIMEOUT_S, "readiness")
        for model, ports, calls in (("a", first_ports, 2), ("b", second_ports, 3)):
            for _ in range(calls):
                logger = f"http://127.0.0.1:{ports['logger']}/v1/models/{model}:predict"
                assert httpx.post(logger, json={"instances": [[1, 2]]}).status_code == 200
        assert stored_models(f"sqlite:///{tmp_path / 'first' / 'infermon.db'}", 2) == {"a": 2}
        assert stored_models(f"sqlite:///{tmp_path / 'second' / 'infermon.db'}", 3) == {"b": 3}
        stop_and_check_gone(first, first_ports)
        # The second goes on as before: ready, and a call is stored.
        assert all_ready(second_ports)
        logger = f"http://127.0.0.1:{second_ports['logger']}/v1/models/b:predict"
        assert httpx.post(logger, json={"instances": [[1, 2]]}).status_code == 200
        assert stored_models(f"sqlite:///{tmp_path / 'second' / 'infermon.db'}", 4) == {"b": 4}
        stop_and_check_gone(second, second_ports)
    finally:
        first.stop()
        second.stop()


class TerminalOutput:
    """Everything written to a pseudo-terminal, read by a thread until every writer closed it."""

    def __init__(self, master_fd: int) -> None:
        self._fd = master_fd
        self._chunks: list[bytes] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # EIO: the last writer has closed the terminal
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_closed(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The command may hold spaces and parentheses: the fields follow the last ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_in_a_terminal_stops_everything_quickly_and_quietly(
    toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    argv, ports = up_argv(toy_model_server.url, tmp_path)
    master, terminal = pty.openpty()
    up = subprocess.Popen(
        argv, stdin=terminal, stdout=terminal, stderr=terminal, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    output = TerminalOutput(master)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not all_ready(ports):
            assert up.poll() is None, output.text()
            assert time.monotonic() < deadline, output.text()
            time.sleep(0.1)
        children = children_of(up.pid)
        assert len(children) == CHILDREN, output.text()
        before = len(output.text())
        interrupted_at = time.monotonic()
        os.killpg(up.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: its process group
        assert up.wait(CTRL_C_STOP_S * 3) == 0, output.text()
        took_s = time.monotonic() - interrupted_at
        assert output.wait_closed(CTRL_C_STOP_S), "a child still holds the terminal"
        printed = output.text()[before:]
        assert took_s <= CTRL_C_STOP_S, printed
        assert len(printed.splitlines()) <= CTRL_C_MAX_LINES, printed
        assert "\x1b[" not in output.text(), "escape codes reached the terminal"
        assert [pid for pid in children if alive(pid)] == []
    finally:
        for pid in [up.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        up.wait()
        os.close(master)
