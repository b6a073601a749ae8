"""Behind KServe's own model server, the logger is invisible to clients."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.events_on_kafka import by_type, logged_events
from tests.fixtures.factories import TopicFactory
from tests.fixtures.kserve_server import KServeModelServer
from tests.logger.conftest import StartInfermon

pytestmark = pytest.mark.slow

V2_REQUEST = {
    "id": "parity-v2",
    "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}],
}
CALLS = [
    ("POST", "/v1/models/toy:predict", {"instances": [[1, 2], [3, 4]]}),
    ("POST", "/v2/models/toy/infer", V2_REQUEST),
    ("GET", "/v2/health/ready", None),
    ("GET", "/v1/models/toy", None),
    ("POST", "/v1/models/missing:predict", {"instances": [[1]]}),
    ("POST", "/v2/models/toy/infer", {"inputs": "not a list"}),
]


@pytest.mark.parametrize(("method", "path", "body"), CALLS, ids=[f"{m} {p}" for m, p, _ in CALLS])
def test_responses_through_the_logger_equal_direct_responses(
    start_infermon: StartInfermon,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    kserve_model_server: KServeModelServer,
    method: str,
    path: str,
    body: dict | None,
) -> None:
    topic = new_topic()
    logger = start_infermon(
        "logger", "--model-url", kserve_model_server.url,
        "--kafka-bootstrap", kafka_bootstrap, "--topic", topic,
    )  # fmt: skip
    direct = httpx.request(method, kserve_model_server.url + path, json=body)
    proxied = httpx.request(method, logger.url + path, json=body)
    assert proxied.status_code == direct.status_code
    assert proxied.headers.get("content-type") == direct.headers.get("content-type")
    if path.startswith("/v2/models/toy/infer") and direct.status_code == 200:
        # KServe answers with a new id when the request has none; here it echoes ours.
        assert proxied.json() == direct.json()
    else:
        assert proxied.content == direct.content
    logged = by_type(logged_events(kafka_bootstrap, topic, 2))
    assert logged["response"].ext("statuscode") == str(direct.status_code)
    assert logged["response"].value == proxied.content
