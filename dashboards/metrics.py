"""`/metrics`: what the store holds, as Prometheus gauges, and the dashboard's own latency.

The gauges are read from the store at scrape time, through its read side, and kept for
`CACHE_S` seconds, so that several Prometheus servers (or a refreshing browser) cost one read;
at most `MAX_MODELS` models are shown (in name order; the rest counted in
`infermon_dashboard_models_omitted`). A store that cannot be read is
`infermon_dashboard_store_up 0`, never an error answer: the request latencies still show.

Request latency is by route template (`/api/v1/models/{model}`), never by raw path, and by a
known method, so that its label values stay few whatever clients ask for.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboards.auth import require_read
from dashboards.errors import ERROR_RESPONSES
from monitor.store import api_read, detection_read, feedback_read

log = logging.getLogger(__name__)

CACHE_S = 5.0
MAX_MODELS = 100
# Labelled accuracy over the labels of the last day.
ACCURACY_RANGE = timedelta(days=1)
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a path no route serves


@dataclass(slots=True)
class _ModelFigures:
    """One model's latest window and its labelled accuracy."""

    model: str
    report: dict[str, Any] | None = None
    performance: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Snapshot:
    models: list[_ModelFigures]
    omitted: int


def read_snapshot(engine: Engine, max_models: int, now: datetime) -> _Snapshot:
    """Each model's latest report (with its features) and its last day's labelled figures."""
    with engine.connect() as connection:
        names = api_read.model_names(connection)
        found = []
        for model in names[:max_models]:
            figures = _ModelFigures(model, detection_read.latest_report(connection, model))
            figures.performance = feedback_read.performance(
                connection, model, now - ACCURACY_RANGE, None
            )
            found.append(figures)
    return _Snapshot(found, max(0, len(names) - max_models))


def _gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"infermon_dashboard_{name}", documentation, labels=labels)


def _drift_families(snapshot: _Snapshot) -> list[Metric]:
    model_label = ["model"]
    dataset = _gauge("dataset_drift", "1 if the latest window has dataset drift", model_label)
    share = _gauge("drift_share", "share of drifted features in the latest window", model_label)
    instances = _gauge("window_instances", "instances in the latest window", model_label)
    outliers = _gauge("window_outliers", "outlier instances in the latest window", model_label)
    window_end = _gauge(
        "window_end_timestamp_seconds", "end of the model's latest window", model_label
    )
    feature_labels = ["model", "feature"]
    flag = _gauge("feature_drift", "1 if the feature drifted in the latest window", feature_labels)
    measured = [*feature_labels, "measure"]
    score = _gauge(
        "feature_drift_score",
        "the feature's drift score in the latest window: its test's p-value (measure "
        "p_value: drift below the threshold) or distance (measure distance: drift above it)",
        measured,
    )
    threshold = _gauge("feature_drift_threshold", "the threshold the score is held to", measured)
    for figures in snapshot.models:
        report = figures.report
        if report is None:
            continue
        model = figures.model
        dataset.add_metric([model], float(report["dataset_drift"]))
        share.add_metric([model], float(report["share"]))
        instances.add_metric([model], float(report["instances"]))
        outliers.add_metric([model], float(report["outliers"]))
        window_end.add_metric([model], _timestamp(report["window_end"]))
        for feature in report["features"]:
            labels = [model, str(feature["column"])]
            flag.add_metric(labels, float(feature["drift"]))
            measure = "p_value" if feature["p_value"] is not None else "distance"
            value = feature[measure]
            if value is not None:
                score.add_metric([*labels, measure], float(value))
                threshold.add_metric([*labels, measure], float(feature["threshold"]))
    return [dataset, share, instances, outliers, window_end, flag, score, threshold]


def _performance_families(snapshot: _Snapshot) -> list[Metric]:
    labels = ["model"]
    labelled = _gauge("labelled_instances", "instances with a feedback label, last day", labels)
    accuracy = _gauge("accuracy", "a classifier's accuracy on its labels of the last day", labels)
    mae = _gauge("mae", "a regressor's mean absolute error on its labels of the last day", labels)
    for figures in snapshot.models:
        overall = figures.performance.get("overall", {})
        labelled.add_metric([figures.model], float(overall.get("labelled", 0)))
        if overall.get("accuracy") is not None:
            accuracy.add_metric([figures.model], float(overall["accuracy"]))
        if overall.get("mae") is not None:
            mae.add_metric([figures.model], float(overall["mae"]))
    return [labelled, accuracy, mae]


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class StoreCollector(Collector):
    """The store's figures, read at most once per `cache_s` seconds, whatever the scrapes."""

    def __init__(
        self, engine: Engine, cache_s: float = CACHE_S, max_models: int = MAX_MODELS
    ) -> None:
        self._engine = engine
        self._cache_s = cache_s
        self._max_models = max_models
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._read_at: float | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # one read at a time; the others wait and take its result
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self._cache_s:
                self._families = self._read()
                self._read_at = time.monotonic()
            families = self._families
        yield from families

    def _read(self) -> list[Metric]:
        started = time.perf_counter()
        try:
            snapshot = read_snapshot(self._engine, self._max_models, datetime.now(UTC))
            families = _drift_families(snapshot) + _performance_families(snapshot)
            up = 1.0
        except Exception:  # a scrape answers whatever the store holds; the cause is logged
            log.exception("reading the store for /metrics failed")
            snapshot, families, up = _Snapshot([], 0), [], 0.0
        models = _gauge("models", "models shown in these metrics", [])
        models.add_metric([], float(len(snapshot.models)))
        omitted = _gauge("models_omitted", f"models left out (over {self._max_models})", [])
        omitted.add_metric([], float(snapshot.omitted))
        store_up = _gauge("store_up", "1 if the store could be read at the last refresh", [])
        store_up.add_metric([], up)
        took = _gauge("store_read_seconds", "time the last refresh took to read the store", [])
        took.add_metric([], time.perf_counter() - started)
        return [*families, models, omitted, store_up, took]


class DashboardMetrics:
    """The dashboard's registry: request latency and the store's figures."""

    def __init__(self, engine: Engine, cache_s: float = CACHE_S, max_models: int = MAX_MODELS):
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "infermon_dashboard_request_duration_seconds",
            "time to answer a request, by method, route template and status code",
            ["method", "route", "code"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(StoreCollector(engine, cache_s, max_models))


class RouteTemplates:
    """A request path's route template: the /openapi.json path it matches, else the template
    of the route that served it (routes outside the schema), else `UNMATCHED`."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def template(self, scope: Scope) -> str:
        if self._compiled is None:  # the schema is whole only once every router is in
            paths = self._app.openapi().get("paths", {})
            self._compiled = [(compile_path(path)[0], path) for path in paths]
        path = scope["path"]
        for pattern, template in self._compiled:
            if pattern.match(path):
                return template
        served = getattr(scope.get("route"), "path", None)
        return served if isinstance(served, str) and served else UNMATCHED


class RequestLatency:
    """ASGI middleware: each HTTP request's time into `metrics.request_seconds`."""

    def __init__(self, app: ASGIApp, metrics: DashboardMetrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception that escaped every handler

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self.routes.template(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.request_seconds.labels(method, route, str(status)).observe(
                time.perf_counter() - started
            )


def dashboard_metrics(request: Request) -> DashboardMetrics:
    found: DashboardMetrics = request.app.state.metrics
    return found


router = APIRouter(dependencies=[Depends(require_read)], responses=ERROR_RESPONSES)


EXPOSITION = {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {**EXPOSITION, "description": "Prometheus text exposition"}},
    summary="Prometheus metrics: the store's drift and accuracy figures, request latency",
)
def metrics(found: Annotated[DashboardMetrics, Depends(dashboard_metrics)]) -> Response:
    return Response(generate_latest(found.registry), media_type=CONTENT_TYPE_LATEST)
