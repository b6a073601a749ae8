"""Calls through the real pipeline for the dashboard's write tests: KServe v1 events on a real
broker, stored (and their windows evaluated) by an `infermon monitor` process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx
import numpy as np
import uvicorn
from confluent_kafka import Producer
from pydantic import SecretStr

from dashboards.app import create_app
from dashboards.settings import DashboardSettings
from tests.fixtures.processes import free_port
from tests.monitor.detection_data import instance_features
from tests.monitor.test_detection_pipeline import MODEL, kserve_call

__all__ = ["MODEL", "TOKEN", "Calls", "dashboard"]
TOKEN = "write-token-for-tests"


class Calls:
    """Calls of one instance each, 1 ms apart from a given time; remembers what the model
    answered (1 when feature `a` is over 1.5, as `kserve_call` answers)."""

    def __init__(self, bootstrap: str, topic: str, seed: int = 1) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap})
        self._topic = topic
        self._rng = np.random.default_rng(seed)
        self.count = 0
        self.predictions: dict[str, int] = {}

    @staticmethod
    def request_id(number: int) -> str:
        return f"call-{number:06d}"

    def send(self, count: int, start: datetime, shifted: frozenset[str] = frozenset()
             ) -> list[str]:  # fmt: skip
        sent = []
        for n in range(count):
            self.count += 1
            request_id = self.request_id(self.count)
            features = instance_features(self._rng, shifted)
            calls = kserve_call(request_id, start + timedelta(milliseconds=n), features)
            for key, headers, value in calls:
                self._producer.produce(self._topic, value, key, headers=headers)
            self.predictions[request_id] = int(features["a"] > 1.5)
            sent.append(request_id)
        assert self._producer.flush(30) == 0
        return sent


@contextmanager
def dashboard(database_url: str, token: str | None = TOKEN) -> Iterator[httpx.Client]:
    """The dashboard's app over the database, served by uvicorn in a thread of this process;
    writes need `token`. A client of it."""
    settings = DashboardSettings(
        database_url=database_url, api_token=None if token is None else SecretStr(token)
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))  # fmt: skip
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def writing(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
