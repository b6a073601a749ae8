"""`infermon dashboard` as users run it: mistakes refused in one line with exit 2, and a real
uvicorn server over the store once it starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from monitor.store.store import Store
from tests.fixtures.dashboard import WRITE_TOKEN
from tests.fixtures.processes import REPO_ROOT, ServerProcess, free_port, http_ok
from tests.monitor.consumer_helpers import wait_for

pytestmark = pytest.mark.slow


def dashboard(*args: str, token: str | None = WRITE_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("INFERMON_API_TOKEN", None)
    if token is not None:
        env["INFERMON_API_TOKEN"] = token
    argv = [sys.executable, "-m", "infermon.cli", "dashboard", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'infermon.db'}"
    store = Store(url)
    store.upgrade()
    store.close()
    return url


def refused(result: subprocess.CompletedProcess[str], *words: str, lines: int = 1) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("infermon dashboard: ")
    assert len(result.stderr.strip().splitlines()) == lines, result.stderr
    for word in words:
        assert word in result.stderr


def test_no_write_token_without_insecure_writes(database: str) -> None:
    refused(dashboard("--database-url", database, token=None), "INFERMON_API_TOKEN",
            "--insecure-writes")  # fmt: skip
    refused(dashboard("--database-url", database, token=""), "INFERMON_API_TOKEN")


def test_a_port_in_use(database: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        refused(dashboard("--database-url", database, "--port", str(port)), f"port {port}",
                "--port")  # fmt: skip


def test_a_bad_database_url(tmp_path: Path) -> None:
    refused(dashboard("--database-url", "nonsense"), "--database-url", lines=2)
    refused(dashboard("--database-url", "mysql://db/x"), "--database-url", lines=2)
    missing = tmp_path / "nothing" / "here.db"
    refused(dashboard("--database-url", f"sqlite:///{missing}"), str(missing), "db upgrade")
    assert not missing.parent.exists()
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/infermon"
    refused(dashboard("--database-url", unreachable), "cannot read", "127.0.0.1")


def test_it_serves_the_api_until_sigterm(database: str) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "INFERMON_API_TOKEN": WRITE_TOKEN}
    argv = [sys.executable, "-m", "infermon.cli", "dashboard", "--database-url", database,
            "--port", str(port)]  # fmt: skip
    process = ServerProcess("infermon-dashboard", argv, cwd=REPO_ROOT, env=env, port=port)
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_until(lambda: http_ok(f"{url}/healthz"), 20, "health")
        assert httpx.get(f"{url}/readyz").json() == {"ready": True}
        assert httpx.get(f"{url}/api/v1/models").json() == {"models": []}
        assert httpx.get(f"{url}/api/v1/models/x/drift").status_code == 404
        process.kill(signal.SIGTERM)
        wait_for("the dashboard to stop", lambda: not process.running(), 10)
        log = process.log_tail(100)
        assert f"http://127.0.0.1:{port}" in log
        assert WRITE_TOKEN not in log
    finally:
        process.stop()
