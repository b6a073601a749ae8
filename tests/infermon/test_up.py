"""`infermon up`: the README's run command, with its embedded broker, end to end: a call
through its logger ends up stored by its monitor."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from monitor.store.store import Store
from tests.fixtures.broker import read_topic
from tests.fixtures.processes import REPO_ROOT, ServerProcess, free_port, http_ok
from tests.fixtures.toy_model_server import ToyModelServer


def test_up_logs_and_stores_calls_through_its_own_broker(
    toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    names = ("broker", "logger", "ingest", "logger-admin", "ingest-admin", "monitor-admin")
    ports = {name: free_port() for name in names}
    database_url = f"sqlite:///{tmp_path / 'up.db'}"
    argv = [
        sys.executable, "-m", "infermon.cli", "up", "--model-url", toy_model_server.url,
        "--broker-port", str(ports["broker"]), "--logger-port", str(ports["logger"]),
        "--ingest-port", str(ports["ingest"]), "--logger-admin-port", str(ports["logger-admin"]),
        "--ingest-admin-port", str(ports["ingest-admin"]), "--spool-dir", str(tmp_path),
        "--topic", "up.payloads", "--database-url", database_url,
        "--monitor-admin-port", str(ports["monitor-admin"]),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    up = ServerProcess("infermon-up", argv, cwd=REPO_ROOT, env=env)
    try:
        for admin in ("logger-admin", "ingest-admin", "monitor-admin"):
            url = f"http://127.0.0.1:{ports[admin]}/readyz"
            up.wait_until(lambda url=url: http_ok(url), 30, f"{admin} readiness")
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


def test_up_refuses_a_broker_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "infermon.cli", "up", "--broker-port", str(port),
             "--spool-dir", str(tmp_path)],
            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr
