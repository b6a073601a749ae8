"""GET /api/v1/models/{model}/traffic (buckets filled with zeros between calls, 404, 422) and
the page's files (`/`, its scripts, the shared view and chart library, nothing else), through
the dashboard's app over a store on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn

from dashboards.app import create_app
from dashboards.settings import DashboardSettings
from infermon import html
from monitor.store.store import Store
from tests.fixtures.processes import free_port
from tests.monitor.store.helpers import T0, request, response


@pytest.fixture
def client(database_url: str) -> Iterator[httpx.Client]:
    with Store(database_url) as store:
        store.upgrade()
        for n, (second, status) in enumerate([(5, 200), (20, 500), (130, 200)]):
            at = T0 + timedelta(seconds=second)
            store.write([request(f"r{n}", time=at), response(
                f"r{n}", time=at + timedelta(milliseconds=4), status_code=status,
                latency_ms=10.0 * (n + 1))])  # fmt: skip
    settings = DashboardSettings(database_url=database_url, insecure_writes=True)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the dashboard did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as opened:
            yield opened
    finally:
        server.should_exit = True
        thread.join(10)


def iso(delta: timedelta) -> str:
    return (T0 + delta).isoformat()


def test_traffic_has_a_bucket_for_every_step_empty_ones_zero(client: httpx.Client) -> None:
    answer = client.get("/api/v1/models/iris/traffic", params={
        "since": iso(timedelta(0)), "until": iso(timedelta(minutes=3)), "bucket": 60})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["bucket_s"] == 60
    shown = [
        (b["calls"], b["errors"], b["error_rate"], b["latency_p99_ms"]) for b in body["buckets"]
    ]
    assert shown == [(2, 1, 0.5, 20.0), (0, 0, None, None), (1, 0, 0.0, 30.0)]
    assert body["buckets"][1]["start"].startswith("2025-03-01T12:01:00")


def test_traffic_chooses_a_bucket_size_when_none_is_asked(client: httpx.Client) -> None:
    answer = client.get("/api/v1/models/iris/traffic", params={
        "since": iso(timedelta(0)), "until": iso(timedelta(hours=1))})  # fmt: skip
    body = answer.json()
    assert body["bucket_s"] == 30 and len(body["buckets"]) == 120
    assert sum(b["calls"] for b in body["buckets"]) == 3


def test_traffic_refuses_an_unknown_model_and_bad_ranges(client: httpx.Client) -> None:
    unknown = client.get("/api/v1/models/nope/traffic")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no model 'nope'"})
    backwards = client.get("/api/v1/models/iris/traffic", params={
        "since": iso(timedelta(hours=1)), "until": iso(timedelta(0))})  # fmt: skip
    assert (backwards.status_code, backwards.json()) == (
        422, {"error": "until must be after since"})  # fmt: skip
    many = client.get("/api/v1/models/iris/traffic", params={
        "since": iso(timedelta(0)), "until": iso(timedelta(days=1)), "bucket": 1})  # fmt: skip
    assert many.status_code == 422 and "86400 buckets" in many.json()["error"]
    assert client.get("/api/v1/models/iris/traffic", params={"bucket": 0}).status_code == 422


@pytest.mark.parametrize(("since", "until", "bucket"), [
    ("0001-01-01T00:00:00Z", "0050-01-01T00:00:00Z", 31_622_400),  # aligned before year 1
    ("9999-12-01T00:00:00Z", "9999-12-31T23:59:59Z", 604_800),  # a bucket ends after 9999
])  # fmt: skip
def test_traffic_refuses_buckets_beyond_the_calendar(
    client: httpx.Client, since: str, until: str, bucket: int
) -> None:
    answer = client.get("/api/v1/models/iris/traffic",
                        params={"since": since, "until": until, "bucket": bucket})  # fmt: skip
    assert answer.status_code == 422 and "years 1 to 9999" in answer.json()["error"]


def test_traffic_before_the_epoch_starts_at_the_bucket_holding_since(client: httpx.Client) -> None:
    since, until = "1969-12-31T23:59:58.5Z", "1970-01-01T00:00:01Z"
    answer = client.get("/api/v1/models/iris/traffic",
                        params={"since": since, "until": until, "bucket": 1})  # fmt: skip
    assert [b["start"] for b in answer.json()["buckets"]] == [
        "1969-12-31T23:59:58Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z"]  # fmt: skip


def test_the_page_and_its_files_are_served_and_nothing_else(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for path in ("static/app.js", "static/style.css", *(f"static/shared/{name}"
                 for name in html.SHARED_FILES)):  # fmt: skip
        assert f'"{path}"' in page.text or path.endswith(".md"), path
        assert client.get(f"/{path}").status_code == 200, path
    chart = client.get(f"/static/shared/{html.CHART_JS}")
    assert chart.content == (html.folder() / html.CHART_JS).read_bytes()
    assert chart.headers["content-type"].startswith("text/javascript")
    for other in ("__init__.py", "report.html", "../html/__init__.py"):
        assert client.get(f"/static/shared/{other}").status_code == 404, other
