"""`infermon up`: the README's run command, with its embedded broker, end to end: a call
through its logger ends up stored by its monitor; Ctrl-C in a terminal stops it all, quickly
and quietly."""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from monitor.store.store import Store
from tests.fixtures.broker import read_topic
from tests.fixtures.processes import REPO_ROOT, ServerProcess, free_port, http_ok
from tests.fixtures.toy_model_server import ToyModelServer

ADMIN_PORTS = ("logger-admin", "ingest-admin", "monitor-admin")
# What the issue asks of Ctrl-C on `infermon up` in a terminal.
CTRL_C_STOP_S = 5.0
CTRL_C_MAX_LINES = 20


def up_argv(model_url: str, tmp_path: Path) -> tuple[list[str], dict[str, int]]:
    """`infermon up` on free ports, its data directory (spools, database) `tmp_path`."""
    names = ("broker", "logger", "ingest", *ADMIN_PORTS)
    ports = {name: free_port() for name in names}
    argv = [
        sys.executable, "-m", "infermon.cli", "up", "--model-url", model_url,
        "--broker-port", str(ports["broker"]), "--logger-port", str(ports["logger"]),
        "--ingest-port", str(ports["ingest"]), "--logger-admin-port", str(ports["logger-admin"]),
        "--ingest-admin-port", str(ports["ingest-admin"]), "--data-dir", str(tmp_path),
        "--topic", "up.payloads",
        "--monitor-admin-port", str(ports["monitor-admin"]),
    ]  # fmt: skip
    return argv, ports


def all_ready(ports: dict[str, int]) -> bool:
    return all(http_ok(f"http://127.0.0.1:{ports[admin]}/readyz") for admin in ADMIN_PORTS)


def test_up_logs_and_stores_calls_through_its_own_broker(
    toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    argv, ports = up_argv(toy_model_server.url, tmp_path)
    database_url = f"sqlite:///{tmp_path / 'infermon.db'}"  # the default, in --data-dir
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    up = ServerProcess("infermon-up", argv, cwd=REPO_ROOT, env=env)
    try:
        up.wait_until(lambda: all_ready(ports), 60, "readiness of logger, ingest and monitor")
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
        os.killpg(up.pid, signal.SIGTERM)
        assert up.wait(30) == 0
    finally:
        up.stop()


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
        assert len(children) == 4, output.text()  # the broker, the monitor, logger, ingest
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
