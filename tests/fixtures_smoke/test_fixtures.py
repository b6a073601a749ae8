"""The shared fixtures do what the rest of the suite relies on, against the real processes."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from confluent_kafka import Producer

from tests.fixtures.broker import create_topic, free_port, read_all, read_topic
from tests.fixtures.factories import TansuFactory, TopicFactory
from tests.fixtures.kserve_server import KServeModelServer
from tests.fixtures.processes import port_open
from tests.fixtures.toy_model_server import ToyModelServer


def test_messages_with_headers_round_trip(kafka_bootstrap: str, new_topic: TopicFactory) -> None:
    topic = new_topic(partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for i in range(10):
        producer.produce(
            topic,
            key=f"key-{i}".encode(),
            value=f"value-{i}".encode(),
            headers=[("ce-id", f"id-{i}".encode()), ("ce-type", b"test")],
        )
    assert producer.flush(10) == 0

    messages = read_topic(kafka_bootstrap, topic, count=10)

    by_key = {m.key(): m for m in messages}
    assert sorted(by_key) == sorted(f"key-{i}".encode() for i in range(10))
    for i in range(10):
        message = by_key[f"key-{i}".encode()]
        assert message.value() == f"value-{i}".encode()
        assert message.headers() == [("ce-id", f"id-{i}".encode()), ("ce-type", b"test")]
    # Nothing beyond the ten, and read_all sees the same set.
    assert len(read_all(kafka_bootstrap, topic, idle_s=0.5)) == 10


def test_create_topic_twice_is_fine(kafka_bootstrap: str, new_topic: TopicFactory) -> None:
    topic = new_topic()
    create_topic(kafka_bootstrap, topic)
    assert read_topic(kafka_bootstrap, topic, count=1, timeout_s=1.0) == []


def test_toy_server_v1_predict(toy_model_server: ToyModelServer) -> None:
    url = f"{toy_model_server.url}/v1/models/toy:predict"
    body = {"instances": [[1, 2], [3, 4], {"a": 1.5, "b": 2}]}

    response = httpx.post(url, json=body)

    assert response.status_code == 200
    assert response.json() == {"predictions": [3, 7, 3.5]}


def test_toy_server_v1_bad_requests(toy_model_server: ToyModelServer) -> None:
    base = toy_model_server.url
    malformed = httpx.post(f"{base}/v1/models/toy:predict", content=b"{not json")
    missing = httpx.post(f"{base}/v1/models/toy:predict", json={"rows": []})
    failing = httpx.post(f"{base}/v1/models/fail:predict", json={"instances": [[1]]})
    unknown = httpx.get(f"{base}/no/such/path")

    assert malformed.status_code == 400
    assert "error" in malformed.json()
    assert missing.status_code == 400
    assert failing.status_code == 500
    assert failing.json() == {"error": "model failed"}
    assert unknown.status_code == 404


def test_toy_server_v2_infer(toy_model_server: ToyModelServer) -> None:
    url = f"{toy_model_server.url}/v2/models/toy/infer"
    tensor = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}

    answer = httpx.post(url, json={"id": "req-1", "inputs": [tensor]}).json()
    anonymous = httpx.post(url, json={"inputs": [tensor]}).json()
    wrong_shape = httpx.post(url, json={"inputs": [{**tensor, "shape": [4, 4]}]})

    assert answer["model_name"] == "toy"
    assert answer["id"] == "req-1"
    assert answer["outputs"] == [{"name": "sum", "shape": [2], "datatype": "FP64", "data": [6, 15]}]
    assert len(anonymous["id"]) == 36  # a fresh uuid4
    assert wrong_shape.status_code == 400


def test_toy_server_http_routes(toy_model_server: ToyModelServer) -> None:
    base = toy_model_server.url
    echoed = httpx.post(f"{base}/echo", content=b"\x00abc", headers={"content-type": "x/y"})
    streamed = httpx.get(f"{base}/stream", params={"chunks": 4, "size": 1000})
    teapot = httpx.post(f"{base}/status/418")
    slept = httpx.get(f"{base}/slow", params={"ms": 50})

    assert echoed.content == b"\x00abc"
    assert echoed.headers["content-type"] == "x/y"
    assert echoed.headers["x-echo-length"] == "4"
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert streamed.content == b"x" * 4000
    assert (teapot.status_code, teapot.json()) == (418, {"status": 418})
    assert slept.json() == {"slept_ms": 50}


@pytest.mark.slow
def test_kserve_server_v1_and_v2(kserve_model_server: KServeModelServer) -> None:
    base = f"{kserve_model_server.url}/v1/models/{kserve_model_server.model_name}"
    v1 = httpx.post(f"{base}:predict", json={"instances": [[1, 2], [3, 4]]})
    tensor = {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.5, 2, 3, 4]}
    v2_url = f"{kserve_model_server.url}/v2/models/{kserve_model_server.model_name}/infer"
    v2 = httpx.post(v2_url, json={"id": "req-7", "inputs": [tensor]})

    assert v1.status_code == 200
    assert v1.json() == {"predictions": [3, 7]}
    assert v2.status_code == 200
    answer = v2.json()
    assert answer["id"] == "req-7"
    assert answer["outputs"][0]["name"] == "sum"
    assert answer["outputs"][0]["datatype"] == "FP64"
    assert answer["outputs"][0]["shape"] == [2]
    assert answer["outputs"][0]["data"] == [3.5, 7.0]


def test_tansu_started_later_on_reserved_port(tansu_factory: TansuFactory) -> None:
    port = free_port()
    assert not port_open("127.0.0.1", port)

    broker = tansu_factory(port)

    assert broker.bootstrap == f"127.0.0.1:{port}"
    assert port_open("127.0.0.1", port)
    create_topic(broker.bootstrap, "after-outage")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("after-outage", value=b"hello")
    assert producer.flush(10) == 0
    assert [m.value() for m in read_topic(broker.bootstrap, "after-outage", 1)] == [b"hello"]


def test_tansu_refuses_a_port_in_use(tansu_factory: TansuFactory) -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)), pytest.raises(RuntimeError, match="in use"):
        tansu_factory(port)


def test_tansu_stops_at_once_with_clients_connected(tansu_factory: TansuFactory) -> None:
    broker = tansu_factory()
    create_topic(broker.bootstrap, "busy")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("busy", value=b"x")
    assert producer.flush(10) == 0
    started = time.monotonic()

    broker.stop()

    assert time.monotonic() - started < 1.0
    assert not broker.running()
    assert not port_open("127.0.0.1", broker.port)
