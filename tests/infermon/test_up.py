"""`infermon up`: the README's run command, with its embedded broker, end to end."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx

from tests.fixtures.broker import create_topic, read_topic
from tests.fixtures.processes import REPO_ROOT, ServerProcess, free_port, http_ok
from tests.fixtures.toy_model_server import ToyModelServer


def test_up_logs_calls_through_its_own_broker(
    toy_model_server: ToyModelServer, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in
             ("broker", "logger", "ingest", "logger-admin", "ingest-admin")}  # fmt: skip
    argv = [
        sys.executable, "-m", "infermon.cli", "up", "--model-url", toy_model_server.url,
        "--broker-port", str(ports["broker"]), "--logger-port", str(ports["logger"]),
        "--ingest-port", str(ports["ingest"]), "--logger-admin-port", str(ports["logger-admin"]),
        "--ingest-admin-port", str(ports["ingest-admin"]), "--spool-dir", str(tmp_path),
        "--topic", "up.payloads",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    up = ServerProcess("infermon-up", argv, cwd=REPO_ROOT, env=env)
    try:
        for admin in ("logger-admin", "ingest-admin"):
            url = f"http://127.0.0.1:{ports[admin]}/readyz"
            up.wait_until(lambda url=url: http_ok(url), 30, f"{admin} readiness")
        bootstrap = f"127.0.0.1:{ports['broker']}"
        create_topic(bootstrap, "up.payloads")
        answer = httpx.post(
            f"http://127.0.0.1:{ports['logger']}/v1/models/m:predict", json={"instances": [[2, 3]]}
        )
        assert answer.json() == {"predictions": [5.0]}
        events = read_topic(bootstrap, "up.payloads", 2, timeout_s=20)
        assert len(events) == 2
        os.killpg(up.pid, signal.SIGTERM)
        assert up.wait(30) == 0
    finally:
        up.stop()
