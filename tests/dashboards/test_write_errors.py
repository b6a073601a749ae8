"""The writes and performance refuse bad input with a 4xx and a reason, never a 5xx, and
writes refuse a missing (401) or wrong (403) token; over a database filled by the real
pipeline (calls on a real broker, stored by `infermon monitor`), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pytest

from dashboards.api import uploads
from monitor.store.store import Store
from tests.dashboards.pipeline import MODEL, TOKEN, Calls, dashboard, writing
from tests.fixtures.broker import create_topic
from tests.fixtures.databases import DATABASE_KINDS, postgresql_database_url
from tests.monitor.consumer_helpers import start_monitor, wait_for_stats

pytestmark = pytest.mark.slow
START = datetime.now(UTC) - timedelta(minutes=10)
REFERENCE = f"/api/v1/models/{MODEL}/reference"
PIN = f"/api/v1/models/{MODEL}/reference/from-window"


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def api(request: pytest.FixtureRequest, kafka_bootstrap: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:  # fmt: skip
    """The dashboard over 50 calls stored by the monitor, shared by this module's tests."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path_factory.mktemp('db') / 'i.db'}"])
    else:
        urls = postgresql_database_url()
    database_url = next(urls)
    topic = f"test-dashboard-writes-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic)
    Calls(kafka_bootstrap, topic).send(50, START)
    with (
        Store(database_url) as store,
        start_monitor(
            kafka_bootstrap, topic, database_url, "--no-detection", group=f"group-{topic}"
        ),
    ):
        wait_for_stats(store, lambda s: s["instances"] >= 50)
    with dashboard(database_url) as client:
        yield client
    for _ in urls:  # drops the PostgreSQL database
        pass


def refused(response: httpx.Response, status: int, *reason: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert all(part in error for part in reason), error


def parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


CSV = {"Content-Type": "text/csv"}
AUTHORISED_CSV = {**CSV, **writing()}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("PUT", REFERENCE, {"content": b"x\n1\n", "headers": CSV}),
     ("POST", PIN, {"json": {"start": START.isoformat(), "end": datetime.now(UTC).isoformat()}}),
     ("POST", "/api/v1/feedback", {"json": {"request_id": "call-000001", "label": 1}})],
)  # fmt: skip
def test_writes_need_the_write_token(api: httpx.Client, method: str, path: str,
                                     body: dict[str, Any]) -> None:  # fmt: skip
    headers = body.pop("headers", {})
    none = api.request(method, path, headers=headers, **body)
    wrong = api.request(method, path, headers={**headers, **writing("not-" + TOKEN)}, **body)

    refused(none, 401, "Bearer token is required")
    assert none.headers["www-authenticate"] == "Bearer"
    refused(wrong, 403, "not valid")
    assert api.get(f"/api/v1/models/{MODEL}/performance").json()["overall"]["labelled"] == 0


@pytest.mark.parametrize(
    ("headers", "content", "status", "reason"),
    [({"Content-Type": "image/png"}, b"x\n1\n", 415, "cannot read a reference of type 'image/png'"),
     ({}, b"x\n1\n", 415, "type 'none'"),
     (CSV, b"", 422, "empty"),
     (CSV, b"x,y\n", 422, "no row"),
     (CSV, b'"unclosed\n1,2\n', 422, "cannot read the upload as csv"),
     ({"Content-Type": "application/vnd.apache.parquet"}, b"PAR1 not really", 422,
      "cannot read the upload as parquet"),
     ({"Content-Type": "application/x-ndjson"}, b'{"x": 1}\n{"x": \n', 422,
      "cannot read the upload as jsonl"),
     ({"Content-Type": "application/x-ndjson"}, b'{"x": 1}\n{"x": "a"}\n{"x": [1]}\n', 422,
      "cannot store the reference's rows"),
     ({"Content-Type": "application/jsonl"}, b"{}\n{}\n", 422, "no column")],
)  # fmt: skip
def test_a_bad_upload_is_refused_with_its_reason(
    api: httpx.Client, headers: dict[str, str], content: bytes, status: int, reason: str
) -> None:
    response = api.put(REFERENCE, content=content, headers={**headers, **writing()})

    refused(response, status, reason)


def test_uploads_over_the_bound_are_refused(api: httpx.Client, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:  # fmt: skip
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 1000)
    body = b"x\n" + b"1\n" * 600

    declared = api.put(REFERENCE, content=body, headers=AUTHORISED_CSV)
    streamed = api.put(REFERENCE, content=iter([body[:600], body[600:]]), headers=AUTHORISED_CSV)

    refused(declared, 413, "at most 1,000 bytes")
    refused(streamed, 413, "at most 1,000 bytes")  # chunked: no length declared


def test_an_unknown_model_is_a_404(api: httpx.Client) -> None:
    pin = {"start": START.isoformat(), "end": datetime.now(UTC).isoformat()}
    refused(api.put("/api/v1/models/nope/reference", content=b"x\n1\n", headers=AUTHORISED_CSV),
            404, "no model 'nope'")  # fmt: skip
    refused(api.post("/api/v1/models/nope/reference/from-window", json=pin, headers=writing()),
            404, "no model 'nope'")  # fmt: skip
    refused(api.get("/api/v1/models/nope/performance"), 404, "no model 'nope'")


def test_parquet_sent_as_octet_stream_with_its_format(api: httpx.Client) -> None:
    body = parquet(pd.DataFrame({"a": [1.0, 2.0], "colour": ["red", "blue"]}))
    octet_stream = {"Content-Type": "application/octet-stream", **writing()}
    response = api.put(REFERENCE, params={"format": "parquet"}, content=body, headers=octet_stream)

    assert response.status_code == 201, response.text
    assert response.json()["columns"] == ["a", "colour"] and response.json()["pending"]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [({"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, 422,
      "end must be after start"),
     ({"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z"}, 422,
      "no stored instance of model"),
     ({"start": "yesterday", "end": "2020-01-02T00:00:00Z"}, 422, "start"),
     ({"start": "2020-01-01T00:00:00Z"}, 422, "end"),
     ({"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00Z", "x": 1}, 422, "x")],
)  # fmt: skip
def test_a_bad_range_to_pin_is_refused_with_its_reason(
    api: httpx.Client, body: dict[str, Any], status: int, reason: str
) -> None:
    refused(api.post(PIN, json=body, headers=writing()), status, reason)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b'{"request_id": "a"}', "label"),
     (b'{"request_id": "a", "label": true}', "label"),
     (b'{"request_id": "a", "label": null}', "label"),
     (b'{"request_id": "a", "label": [1]}', "label"),
     (b'{"request_id": "a", "label": NaN}', "finite"),
     (b'{"request_id": "a", "label": 1e999}', "finite"),
     (b'{"request_id": "a", "label": 99999999999999999999}', "64 bits"),
     (b'{"request_id": "", "label": 1}', "request_id"),
     (b'{"request_id": "a", "row_index": -1, "label": 1}', "row_index"),
     (b'{"request_id": "a", "lable": 1}', "lable"),
     (b"[]", "at least 1"),
     (b"not json", "JSON"),
     (b'"a"', "body")],
)  # fmt: skip
def test_bad_feedback_is_refused_with_its_reason(api: httpx.Client, content: bytes,
                                                 reason: str) -> None:  # fmt: skip
    response = api.post("/api/v1/feedback", content=content,
                        headers={"Content-Type": "application/json", **writing()})  # fmt: skip

    refused(response, 422, reason)


def test_at_most_ten_thousand_labels_a_call(api: httpx.Client) -> None:
    labels = [{"request_id": f"r{n}", "label": 1} for n in range(10_001)]

    refused(api.post("/api/v1/feedback", json=labels, headers=writing()), 422, "10000")
    stored = api.post("/api/v1/feedback", json=labels[:10_000], headers=writing())
    assert stored.json() == {"received": 10_000, "stored": 10_000}


def test_performance_needs_since_before_until(api: httpx.Client) -> None:
    params = {"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}
    refused(api.get(f"/api/v1/models/{MODEL}/performance", params=params), 422, "until")
    refused(api.get(f"/api/v1/models/{MODEL}/performance", params={"since": "soon"}), 422,
            "since")  # fmt: skip


def test_the_writes_are_described_in_openapi(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    upload = paths["/api/v1/models/{model}/reference"]["put"]
    assert set(upload["requestBody"]["content"]) >= {"text/csv", "application/x-ndjson",
                                                     "application/vnd.apache.parquet"}  # fmt: skip
    assert {"201", "401", "403", "404", "413", "415", "422"} <= set(upload["responses"])
    assert "201" in paths["/api/v1/models/{model}/reference/from-window"]["post"]["responses"]
    assert "200" in paths["/api/v1/feedback"]["post"]["responses"]
    assert "200" in paths["/api/v1/models/{model}/performance"]["get"]["responses"]
