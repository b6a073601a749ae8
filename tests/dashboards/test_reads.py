"""The read API over databases filled by the real pipeline (broker -> `infermon monitor`, with
drift detection), on SQLite and PostgreSQL: every read route, its filters, 404s and 422s."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from monitor.reports import as_json
from monitor.store.detection_store import DetectionStore
from tests.fixtures.dashboard import (
    BINARY_CALL,
    CALLS,
    ERROR_EVERY,
    MODEL,
    WINDOWS,
    DashboardData,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def api(dashboard_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{dashboard_url}/api/v1", timeout=10) as client:
        yield client


def stored_reports(data: DashboardData) -> list[dict[str, Any]]:
    """`infermon reports --json`'s objects, oldest window first, latest revision each."""
    found = DetectionStore(data.store).reports(MODEL, limit=100)
    latest: dict[Any, dict[str, Any]] = {}
    for report in sorted(found, key=lambda r: (r["window_end"], r["revision"])):
        latest[report["window_id"]] = report
    return [json.loads(json.dumps(as_json(report))) for report in latest.values()]


def when(data: DashboardData, call: int) -> str:
    """The time of call number `call` (from 0), as a query parameter."""
    return (data.start + timedelta(milliseconds=10 * call)).isoformat()


def parsed(text: str) -> datetime:
    return datetime.fromisoformat(text)


def all_pages(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_models_gives_counts_times_traffic_and_drift(
    api: httpx.Client, dashboard_data: DashboardData
) -> None:
    [model] = [m for m in api.get("/models").json()["models"] if m["model"] == MODEL]
    stats = dashboard_data.store.stats()["models"][MODEL]
    assert (model["inferences"], model["instances"]) == (stats["inferences"], stats["instances"])
    assert model["inferences"] == CALLS
    assert parsed(model["first_seen"]) == dashboard_data.start
    assert parsed(model["last_seen"]) == dashboard_data.start + timedelta(milliseconds=10 * 999)
    recent = model["recent"]
    assert recent["calls"] == CALLS and parsed(recent["since"]) == dashboard_data.start
    assert recent["error_rate"] == pytest.approx((CALLS // ERROR_EVERY) / CALLS)
    latencies = [row.latency_ms for row in dashboard_data.store.latest_inferences(CALLS, MODEL)]
    for name, share in (("p50", 50), ("p95", 95), ("p99", 99)):  # nearest rank
        expected = np.percentile(latencies, share, method="inverted_cdf")
        assert recent["latency_ms"][name] == pytest.approx(expected)
    latest = stored_reports(dashboard_data)[-1]
    assert model["drift"] == {
        "dataset_drift": True, "share": latest["share"], "window_end": latest["window_end"]
    }  # fmt: skip


def test_inference_pages_are_newest_first_without_gaps_or_repeats(
    api: httpx.Client, dashboard_data: DashboardData
) -> None:
    items = all_pages(api, f"/models/{MODEL}/inferences", limit=300)
    keys = [(parsed(item["time"]), item["request_id"]) for item in items]
    assert len(keys) == CALLS == len(set(keys))
    assert keys == sorted(keys, reverse=True)
    assert {item["request_id"] for item in items} == {f"call-{n:06d}" for n in range(1, CALLS + 1)}


@pytest.mark.parametrize("status", ["500", "5xx", "error"])
def test_inference_pages_filter_by_status(
    api: httpx.Client, dashboard_data: DashboardData, status: str
) -> None:
    items = all_pages(api, f"/models/{MODEL}/inferences", status=status, limit=1000)
    assert len(items) == CALLS // ERROR_EVERY
    assert {item["status_code"] for item in items} == {500}


def test_inference_pages_filter_by_time(api: httpx.Client, dashboard_data: DashboardData) -> None:
    params = {"since": when(dashboard_data, 100), "until": when(dashboard_data, 200)}
    items = all_pages(api, f"/models/{MODEL}/inferences", **params, limit=30)
    assert [item["request_id"] for item in items] == [f"call-{n:06d}" for n in range(200, 100, -1)]


def test_one_inference_has_its_payloads_attributes_and_instances(api: httpx.Client) -> None:
    found = api.get("/inferences/call-000025").json()
    assert found["status_code"] == 500 and found["model"] == MODEL
    assert found["latency_ms"] == 10 + int(found["instances"][0]["features"]["b"])
    request, response = found["request"], found["response"]
    assert request["encoding"] == "json" and response["encoding"] == "json"
    assert request["body"]["instances"][0] == found["instances"][0]["features"]
    assert response["body"] == {"predictions": [found["instances"][0]["prediction"]["prediction"]]}
    assert request["attributes"]["inferenceservicename"] == MODEL
    assert response["attributes"]["statuscode"] == "500"
    assert [row["row_index"] for row in found["instances"]] == [0]
    assert found["other_events"] == []


def test_a_payload_that_is_not_json_comes_in_base64(api: httpx.Client) -> None:
    response = api.get(f"/inferences/{BINARY_CALL}").json()["response"]
    assert response["encoding"] == "base64"
    assert response["content_type"] == "application/octet-stream"
    assert base64.b64decode(response["body"]) == b"\x00\xffnot json"


def test_drift_is_the_latest_report_as_infermon_reports_prints_it(
    api: httpx.Client, dashboard_data: DashboardData
) -> None:
    assert api.get(f"/models/{MODEL}/drift").json() == stored_reports(dashboard_data)[-1]


def test_drift_history_is_every_window_as_infermon_reports_prints_it(
    api: httpx.Client, dashboard_data: DashboardData
) -> None:
    expected = stored_reports(dashboard_data)
    assert len(expected) == WINDOWS
    assert api.get(f"/models/{MODEL}/drift/history").json() == {"reports": expected}
    assert api.get(f"/models/{MODEL}/drift/history", params={"limit": 2}).json() == {
        "reports": expected[-2:]
    }
    window_ends = [report["window_end"] for report in expected]
    params = {"since": window_ends[1], "until": window_ends[3]}
    found = api.get(f"/models/{MODEL}/drift/history", params=params).json()["reports"]
    assert found == expected[1:3]
    # The timeline's view: the same reports without their feature rows.
    summaries = api.get(f"/models/{MODEL}/drift/history", params={"features": "false"}).json()
    assert summaries == {"reports": [{**report, "features": []} for report in expected]}


def test_drift_history_of_one_feature(api: httpx.Client, dashboard_data: DashboardData) -> None:
    found = api.get(f"/models/{MODEL}/drift/history", params={"feature": "a"}).json()["reports"]
    assert [[f["column"] for f in report["features"]] for report in found] == [["a"]] * WINDOWS
    assert [report["features"][0]["drift"] for report in found] == [False, False, True, True]
    histogram = found[-1]["features"][0]["histogram"]
    assert len(histogram["labels"]) == len(histogram["reference"]) == len(histogram["current"])
    missing = api.get(f"/models/{MODEL}/drift/history", params={"feature": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_outliers_are_linked_to_their_inference(
    api: httpx.Client, dashboard_data: DashboardData
) -> None:
    found = api.get(f"/models/{MODEL}/outliers", params={"limit": 1000}).json()["outliers"]
    reports = DetectionStore(dashboard_data.store).reports(MODEL, limit=100)
    assert len(found) == sum(report["outliers"] for report in reports) > 0
    assert all(o["score"] > o["threshold"] for o in found)
    assert [parsed(o["time"]) for o in found] == sorted((parsed(o["time"]) for o in found),
                                                         reverse=True)  # fmt: skip
    first = found[0]
    assert set(first["contributions"]) <= {"a", "b", "c", "prediction"}  # the numeric columns
    inference = api.get(f"/inferences/{first['request_id']}").json()
    assert [row["row_index"] for row in inference["instances"]] == [first["row_index"]]
    assert len(api.get(f"/models/{MODEL}/outliers", params={"limit": 1}).json()["outliers"]) == 1


@pytest.mark.parametrize(
    "path",
    ["/models/nope/inferences", "/models/nope/drift", "/models/nope/drift/history",
     "/models/nope/outliers", "/inferences/nope"],
)  # fmt: skip
def test_unknown_models_and_ids_are_404_with_a_reason(api: httpx.Client, path: str) -> None:
    answer = api.get(path)
    assert answer.status_code == 404
    assert "nope" in answer.json()["error"]


@pytest.mark.parametrize(
    ("path", "params", "word"),
    [
        (f"/models/{MODEL}/inferences", {"limit": "0"}, "limit"),
        (f"/models/{MODEL}/inferences", {"limit": "1001"}, "limit"),
        (f"/models/{MODEL}/inferences", {"limit": "many"}, "limit"),
        (f"/models/{MODEL}/inferences", {"status": "teapot"}, "status"),
        (f"/models/{MODEL}/inferences", {"status": "999"}, "status"),
        (f"/models/{MODEL}/inferences", {"cursor": "not-a-cursor"}, "cursor"),
        (f"/models/{MODEL}/inferences", {"cursor": "WzEsMl0"}, "cursor"),  # [1,2]
        (f"/models/{MODEL}/inferences", {"since": "yesterday"}, "since"),
        (f"/models/{MODEL}/drift/history", {"limit": "-1"}, "limit"),
        (f"/models/{MODEL}/outliers", {"until": "12:00"}, "until"),
    ],
)
def test_bad_parameters_are_422_with_a_reason(
    api: httpx.Client, path: str, params: dict[str, str], word: str
) -> None:
    answer = api.get(path, params=params)
    assert answer.status_code == 422
    assert word in answer.json()["error"]


def test_openapi_describes_every_read_route_with_its_response_model(dashboard_url: str) -> None:
    schema = httpx.get(f"{dashboard_url}/openapi.json").json()
    routes = ["/api/v1/models", "/api/v1/models/{model}/inferences",
              "/api/v1/inferences/{request_id}", "/api/v1/models/{model}/drift",
              "/api/v1/models/{model}/drift/history", "/api/v1/models/{model}/outliers",
              "/healthz", "/readyz"]  # fmt: skip
    for route in routes:
        ok = schema["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]
        assert "$ref" in ok["schema"], route
    errors = schema["paths"]["/api/v1/models/{model}/drift"]["get"]["responses"]
    assert errors["404"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
