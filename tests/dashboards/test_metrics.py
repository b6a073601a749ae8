"""`/metrics` of the dashboard over databases filled by the real pipeline (SQLite, PostgreSQL):
the store's latest window per model and feature, labelled accuracy, request latency by route
template; a store that cannot be read is a gauge, not an error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score

from dashboards.app import create_app
from dashboards.metrics import StoreCollector
from dashboards.settings import DashboardSettings
from monitor.metrics import MonitorMetrics
from monitor.store.detection_store import DetectionStore
from monitor.store.engine import create_store_engine
from tests.fixtures.dashboard import MODEL, WRITE_TOKEN, DashboardData, dashboard_server

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample by (name, labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(f"infermon_dashboard_{name}", frozenset(labels.items()))]


def scrape(url: str) -> Samples:
    answer = httpx.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


@pytest.fixture(scope="module")
def metrics_url(dashboard_data: DashboardData) -> Iterator[str]:
    """A dashboard of its own, so its request counts are only this module's."""
    app = create_app(dashboard_data.settings(api_token=WRITE_TOKEN))
    with dashboard_server(app) as url:
        yield url


def test_the_latest_window_per_model_and_feature(
    metrics_url: str, dashboard_data: DashboardData
) -> None:
    latest = DetectionStore(dashboard_data.store).reports(MODEL, limit=1)[0]
    found = scrape(metrics_url)
    assert value(found, "store_up") == 1
    assert value(found, "dataset_drift", model=MODEL) == 1 == float(latest["dataset_drift"])
    assert value(found, "drift_share", model=MODEL) == pytest.approx(latest["share"])
    assert value(found, "window_instances", model=MODEL) == latest["instances"]
    assert value(found, "window_outliers", model=MODEL) == latest["outliers"] > 0
    end = value(found, "window_end_timestamp_seconds", model=MODEL)
    assert end == pytest.approx(latest["window_end"].timestamp())
    for feature in latest["features"]:
        labels = {"model": MODEL, "feature": feature["column"]}
        assert value(found, "feature_drift", **labels) == float(feature["drift"])
        measure = "p_value" if feature["p_value"] is not None else "distance"
        assert value(found, "feature_drift_score", **labels, measure=measure) == pytest.approx(
            feature[measure]
        )
        threshold = value(found, "feature_drift_threshold", **labels, measure=measure)
        assert threshold == pytest.approx(feature["threshold"])
    drifted = {f["column"] for f in latest["features"] if f["drift"]}
    assert {"a", "colour"} <= drifted


def test_labelled_accuracy_is_that_of_the_feedback(
    metrics_url: str, dashboard_data: DashboardData
) -> None:
    """Labels for 40 calls, every third one wrong: the gauge is sklearn's accuracy on them."""
    write = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    with httpx.Client(base_url=f"{metrics_url}/api/v1", timeout=30) as api:
        calls = api.get(f"/models/{MODEL}/inferences", params={"limit": 40}).json()["items"]
        predictions, labels = [], []
        for n, call in enumerate(calls):
            found = api.get(f"/inferences/{call['request_id']}").json()
            predicted = found["instances"][0]["prediction"]["prediction"]
            predictions.append(predicted)
            labels.append(1 - predicted if n % 3 == 0 else predicted)
        feedback = [
            {"request_id": call["request_id"], "label": label}
            for call, label in zip(calls, labels, strict=True)
        ]
        written = api.post("/feedback", json=feedback, headers=write)
    assert written.status_code == 200, written.text
    engine = create_store_engine(dashboard_data.database_url)
    try:  # a collector of its own: the app's may hold a read from before the labels
        found = samples_of(StoreCollector(engine, cache_s=0))
    finally:
        engine.dispose()
    assert value(found, "labelled_instances", model=MODEL) == 40
    assert value(found, "accuracy", model=MODEL) == pytest.approx(
        accuracy_score(labels, predictions)
    )


def samples_of(collector: StoreCollector) -> Samples:
    found: Samples = {}
    for family in collector.collect():
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def test_request_latency_is_by_route_template(metrics_url: str) -> None:
    before = scrape(metrics_url)
    for request_id in ("call-000001", "call-000002", "no-such-call"):
        httpx.get(f"{metrics_url}/api/v1/inferences/{request_id}")
    httpx.get(f"{metrics_url}/no/such/path")
    found = scrape(metrics_url)
    count = "request_duration_seconds_count"
    route = "/api/v1/inferences/{request_id}"

    def added(**labels: str) -> float:
        return value(found, count, **labels) - before.get(
            (f"infermon_dashboard_{count}", frozenset(labels.items())), 0
        )

    assert added(method="GET", route=route, code="200") == 2
    assert added(method="GET", route=route, code="404") == 1
    assert added(method="GET", route="unmatched", code="404") == 1
    routes = {dict(labels).get("route") for name, labels in found if "request_duration" in name}
    assert not any("call-0" in str(r) or "/no/such" in str(r) for r in routes)


def test_reads_are_cached_and_models_bounded(dashboard_data: DashboardData) -> None:
    engine = create_store_engine(dashboard_data.database_url)
    try:
        bounded = StoreCollector(engine, cache_s=60, max_models=0)
        first = samples_of(bounded)
        assert value(first, "models") == 0 and value(first, "models_omitted") >= 1
        assert not any(name.endswith("dataset_drift") for name, _ in first)
        # Within cache_s the same read is given again: its time taken is the same figure.
        again = samples_of(bounded)
        assert value(again, "store_read_seconds") == value(first, "store_read_seconds")
    finally:
        engine.dispose()


def test_a_store_that_cannot_be_read_is_a_gauge_not_an_error() -> None:
    # Nothing listens on port 1: the connection is refused at once.
    settings = DashboardSettings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", insecure_writes=True
    )
    with dashboard_server(create_app(settings)) as url:
        found = scrape(url)
    assert value(found, "store_up") == 0
    assert value(found, "models") == 0


def test_a_read_token_guards_metrics_too(dashboard_data: DashboardData) -> None:
    app = create_app(dashboard_data.settings(api_token=WRITE_TOKEN, api_read_token="reader"))
    with dashboard_server(app) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer x"}).status_code == 403
        answer = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer reader"})
        assert answer.status_code == 200


def test_the_monitor_shows_its_consumer_lag(dashboard_data: DashboardData) -> None:
    """Every call is stored: the topic's partition shows a lag of 0 (the gauge per partition
    of several is the next test's)."""
    lags = dashboard_data.monitor.wait_for_metrics(
        lambda found: len([k for k in found if k.startswith("infermon_monitor_consumer_lag")]) == 1,
        30,
        "the consumer lag of the partition",
    )
    assert {v for k, v in lags.items() if k.startswith("infermon_monitor_consumer_lag")} == {0}


def test_consumer_lag_is_each_assigned_partitions_and_forgets_revoked_ones() -> None:
    metrics = MonitorMetrics(CollectorRegistry())

    def statistics(lags: dict[str, int]) -> dict[str, Any]:
        """librdkafka's statistics, the part read: partition -1 is its internal one."""
        partitions = {p: {"consumer_lag_stored": lag} for p, lag in lags.items()}
        return {"topics": {"payloads": {"partitions": {"-1": {}, **partitions}}}}

    def shown() -> dict[str, float]:
        return {
            sample.labels["partition"]: sample.value
            for sample in metrics.consumer_lag.collect()[0].samples
        }

    metrics.set_consumer_lag(statistics({"0": 5, "1": -1, "2": 0}))  # -1: not known yet
    assert shown() == {"0": 5, "2": 0}
    metrics.set_consumer_lag(statistics({"2": 7}))  # 0 moved to another member
    assert shown() == {"2": 7}
