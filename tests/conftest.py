"""Shared fixtures: a Kafka broker, the toy model server and KServe's own model server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.fixtures.broker import TansuBroker, broker_bootstrap, create_topic
from tests.fixtures.browser import browser  # noqa: F401  (registers the fixture)
from tests.fixtures.databases import database_url, store  # noqa: F401  (registers them)
from tests.fixtures.factories import TansuFactory, TopicFactory
from tests.fixtures.kserve_server import KServeModelServer
from tests.fixtures.toy_model_server import ToyModelServer


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with broker_bootstrap() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def toy_model_server() -> Iterator[ToyModelServer]:
    with ToyModelServer() as server:
        yield server


@pytest.fixture(scope="session")
def kserve_model_server() -> Iterator[KServeModelServer]:
    with KServeModelServer() as server:
        yield server


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> TopicFactory:
    """`new_topic(partitions=1)` creates a topic named after the test, unique per call."""
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]

    def make(partitions: int = 1) -> str:
        name = f"test-{stem}-{uuid.uuid4().hex[:8]}"
        create_topic(kafka_bootstrap, name, partitions=partitions)
        return name

    return make


@pytest.fixture
def tansu_factory() -> Iterator[TansuFactory]:
    """`tansu_factory(port=None)` starts an extra broker; all are stopped after the test."""
    brokers: list[TansuBroker] = []

    def start(port: int | None = None) -> TansuBroker:
        broker = TansuBroker(port)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.stop()
