"""GET routes: health, models, inferences, drift reports, outliers.

Every query is the store's (`monitor.store.api_read`, `detection_read`); this module checks
parameters, answers 404 for what is not stored and shapes the answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from dashboards.api import shapes
from dashboards.api.schemas import (
    DriftHistory,
    DriftReport,
    Health,
    InferenceDetail,
    InferencePage,
    InstanceRow,
    ModelList,
    ModelSummary,
    Outlier,
    OutlierList,
    Readiness,
)
from dashboards.auth import require_read
from dashboards.counts import ModelCounts
from dashboards.database import Reading, Store
from dashboards.errors import ERROR_RESPONSES, NOT_FOUND, not_found
from dashboards.report_cache import ReportCache
from monitor.store import api_read, detection_read
from monitor.store.schema import as_utc

# The recent range of `GET /models`: a model's newest calls, at most this many (p99 is then
# the 990th latency; reading 10,000 put the route's p95 at 190-330 ms over a 1M-call store).
RECENT_CALLS = 1000
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"at most this many, ≤ {MAX_LIMIT}")]
Since = Annotated[datetime | None, Query(description="from this time on (inclusive)")]
Until = Annotated[datetime | None, Query(description="before this time (exclusive)")]
Windows = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="the newest windows, at most")]

# Liveness and readiness: open, outside /api/v1, for probes.
health_router = APIRouter()
router = APIRouter(dependencies=[Depends(require_read)], responses=ERROR_RESPONSES)


@health_router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@health_router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(store: Store) -> JSONResponse:
    ready = store.ready()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def model_counts(request: Request) -> ModelCounts:
    counts: ModelCounts = request.app.state.model_counts
    return counts


def known_model(connection: Reading, model: str) -> str:
    if not api_read.model_exists(connection, model):
        raise not_found(f"no model {model[:100]!r} is stored")
    return model


Model = Annotated[str, Depends(known_model)]


def report_cache(request: Request) -> ReportCache:
    cache: ReportCache = request.app.state.report_cache
    return cache


Reports = Annotated[ReportCache, Depends(report_cache)]


def _report_json(report: dict[str, Any]) -> bytes:
    """A report with its features, as `infermon reports --json` prints it."""
    return shapes.drift_report(report).model_dump_json().encode()


@router.get("/models", response_model=ModelList, summary="Every model at a glance")
def models(connection: Reading, counts: Annotated[ModelCounts, Depends(model_counts)]) -> ModelList:
    """Each model's calls and instances, first and last call, and over its newest calls
    (at most 1,000) the error rate and latency percentiles; its latest drift state."""
    drift = detection_read.drift_states(connection)
    found = []
    for model in api_read.model_names(connection):
        latest = drift.get(model)
        last_seen = api_read.newest_time(connection, "inferences", model)
        summary = ModelSummary(
            model=model,
            inferences=counts.count(connection, "inferences", model),
            instances=counts.count(connection, "instances", model),
            first_seen=api_read.first_seen(connection, model),
            last_seen=last_seen,
            recent=shapes.recent_traffic(api_read.recent_calls(connection, model, RECENT_CALLS)),
            drift=None if latest is None else {
                key: latest[key] for key in ("dataset_drift", "share", "window_end")
            },
        )  # fmt: skip
        found.append(summary)
    return ModelList(models=found)


@router.get(
    "/models/{model}/inferences", response_model=InferencePage, responses=NOT_FOUND,
    summary="A model's calls, newest first",
)  # fmt: skip
def model_inferences(
    connection: Reading,
    model: Model,
    since: Since = None,
    until: Until = None,
    status: Annotated[str | None, Query(description="500, 5xx or error (≥ 400)")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="a page's next_cursor")] = None,
) -> InferencePage:
    """Pages by cursor: a page goes on from the last one's oldest call, so calls that arrive
    meanwhile neither repeat nor push others out of the next page."""
    where = shapes.inference_filter(since, until, status)
    before = None if cursor is None else shapes.decode_cursor(cursor)
    found = api_read.inference_page(connection, model, where, limit, before)
    next_cursor = shapes.encode_cursor(found[-1]) if len(found) == limit else None
    return InferencePage(items=[shapes.inference(item) for item in found], next_cursor=next_cursor)


@router.get(
    "/inferences/{request_id}", response_model=InferenceDetail, responses=NOT_FOUND,
    summary="One call: its payloads, CloudEvent attributes and instances",
)  # fmt: skip
def inference(connection: Reading, request_id: str) -> InferenceDetail:
    summary = api_read.inference(connection, request_id)
    if summary is None:
        raise not_found(f"no inference {request_id[:100]!r} is stored")
    stored = [shapes.stored_event(row) for row in api_read.inference_events(connection, request_id)]
    request = next((event for event in stored if event.kind == "request"), None)
    response = next((event for event in stored if event.kind == "response"), None)
    return InferenceDetail(
        **shapes.inference(summary).model_dump(),
        request=request,
        response=response,
        other_events=[event for event in stored if event is not request and event is not response],
        instances=[
            InstanceRow(**row) for row in api_read.inference_instances(connection, request_id)
        ],
    )


@router.get(
    "/models/{model}/drift", response_model=DriftReport, responses=NOT_FOUND,
    summary="The model's latest drift report",
)  # fmt: skip
def drift(connection: Reading, cache: Reports, model: Model) -> Response:
    """The newest window's latest revision; 404 before the model's first report."""
    latest = detection_read.report_history(connection, model, limit=1, with_features=False)
    if not latest:
        raise not_found(f"model {model[:100]!r} has no drift report yet")
    (report,) = cache.reports(connection, latest[-1:], None, _report_json)
    return Response(report.body, media_type="application/json")


@router.get(
    "/models/{model}/drift/history", response_model=DriftHistory, responses=NOT_FOUND,
    summary="The model's drift reports over time",
)  # fmt: skip
def drift_history(
    connection: Reading,
    cache: Reports,
    model: Model,
    since: Annotated[datetime | None, Query(description="windows ending at or after it")] = None,
    until: Annotated[datetime | None, Query(description="windows ending before it")] = None,
    feature: Annotated[str | None, Query(description="only this feature's rows")] = None,
    limit: Windows = DEFAULT_LIMIT,
    features: Annotated[
        bool, Query(description="false: the reports without their per-feature rows")
    ] = True,
) -> Response:
    """Each window's latest revision, oldest first: of the windows in range, the newest
    `limit`. A timeline needs only each window's share: `features=false` leaves out the
    feature rows (and their histograms)."""
    since = None if since is None else as_utc(since)
    until = None if until is None else as_utc(until)
    oldest = api_read.nth_latest_window_end(connection, model, limit, until)
    if oldest is not None and (since is None or oldest > since):
        since = oldest
    history = detection_read.report_history(
        connection, model, since, until, limit=limit, with_features=False
    )
    if not features:
        return shapes.json_body(DriftHistory(reports=[shapes.drift_report(r) for r in history]))
    found = cache.reports(connection, history, feature, _report_json)
    if feature is not None and found and not any(report.has_features for report in found):
        raise not_found(f"model {model[:100]!r} has no feature {feature[:100]!r} in these reports")
    body = b'{"reports":[' + b",".join(report.body for report in found) + b"]}"
    return Response(body, media_type="application/json")


@router.get(
    "/models/{model}/outliers", response_model=OutlierList, responses=NOT_FOUND,
    summary="The model's outliers, newest first",
)  # fmt: skip
def model_outliers(
    connection: Reading,
    model: Model,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_LIMIT,
) -> OutlierList:
    """Instances the outlier detector scored above its threshold, each with its inference
    (request_id, row_index) and each feature's part of the score."""
    found = detection_read.model_outliers(
        connection,
        model,
        None if since is None else as_utc(since),
        None if until is None else as_utc(until),
        limit,
    )
    return OutlierList(outliers=[Outlier(**row) for row in found])
