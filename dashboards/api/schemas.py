"""The API's response models: what /openapi.json says each route answers.

Times are ISO 8601 in UTC ("2025-01-02T03:04:05.678901Z").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool


# --- /models ---


class LatencyPercentiles(BaseModel):
    """Over the recent calls that have a latency; null when none has."""

    p50: float | None
    p95: float | None
    p99: float | None


class RecentTraffic(BaseModel):
    """The model's newest calls (at most `RECENT_CALLS` of them): their error rate and
    latency percentiles."""

    calls: int = Field(description="calls in the range")
    since: datetime | None = Field(description="the oldest of them; null without calls")
    error_rate: float | None = Field(
        description="share of the calls with a status that have one ≥ 400; null if none has one"
    )
    latency_ms: LatencyPercentiles


class DriftState(BaseModel):
    """The model's latest window report at a glance."""

    dataset_drift: bool
    share: float = Field(description="share of the tested features that drifted")
    window_end: datetime


class ModelSummary(BaseModel):
    model: str
    inferences: int = Field(description="stored calls")
    instances: int = Field(description="stored instances (rows of the calls' batches)")
    first_seen: datetime | None
    last_seen: datetime | None
    recent: RecentTraffic
    drift: DriftState | None = Field(description="null before the model's first window report")


class ModelList(BaseModel):
    models: list[ModelSummary]


# --- inferences ---


class Inference(BaseModel):
    """One call as stored: its request and response merged."""

    request_id: str
    model: str | None
    namespace: str | None
    inference_service: str | None
    component: str | None
    protocol: str | None
    time: datetime = Field(description="the request's time, else the response's")
    request_time: datetime | None
    response_time: datetime | None
    latency_ms: float | None
    status_code: int | None
    batch_size: int | None
    request_rows: int | None
    response_rows: int | None
    batch_size_mismatch: bool
    has_request: bool
    has_response: bool
    orphaned: bool = Field(description="a request whose response never came")
    request_payload_kind: str | None
    response_payload_kind: str | None


class InferencePage(BaseModel):
    items: list[Inference] = Field(description="newest first")
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next (older) page; null on the last page"
    )


class StoredEvent(BaseModel):
    """A stored CloudEvent: its attributes and its payload, as JSON when it is JSON, else
    base64 (then `content_type` says what it is)."""

    id: str
    source: str
    type: str
    kind: Literal["request", "response", "other"] | str
    time: datetime
    stored_at: datetime
    attributes: dict[str, Any] = Field(description="every CloudEvent attribute")
    content_type: str | None
    bytes: int = Field(description="the payload's size as stored")
    truncated: bool = Field(description="the producer cut the payload to its size limit")
    payload_kind: str
    parse_error: str | None
    encoding: Literal["json", "base64"]
    body: Any = Field(description="the JSON value, or the bytes in base64")


class InstanceRow(BaseModel):
    row_index: int
    time: datetime
    features: Any
    prediction: Any


class InferenceDetail(Inference):
    request: StoredEvent | None
    response: StoredEvent | None
    other_events: list[StoredEvent] = Field(
        description="further events of the call: another type, or from another source"
    )
    instances: list[InstanceRow]


# --- drift, outliers ---


class Histogram(BaseModel):
    """Reference and current shares over the reference's bins."""

    labels: list[str]
    reference: list[float]
    current: list[float]


class FeatureDrift(BaseModel):
    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    distance: float | None
    threshold: float
    threshold_source: str
    drift: bool
    status: str
    reason: str | None
    missing_share: float
    reference_missing_share: float
    missing_drift: bool
    unseen_categories: int
    histogram: Histogram | None


class DriftReport(BaseModel):
    """One window's report: the object `infermon reports --json` prints."""

    model: str
    window_start: datetime
    window_end: datetime
    instances: int
    dataset_drift: bool
    share: float
    revision: int
    late: int = Field(description="instances that came after the window's first report")
    features: list[FeatureDrift]


class DriftHistory(BaseModel):
    reports: list[DriftReport] = Field(description="oldest window first, latest revision each")


class Outlier(BaseModel):
    request_id: str = Field(description="its inference: GET /api/v1/inferences/{request_id}")
    row_index: int
    time: datetime
    window_id: int
    score: float
    threshold: float
    method: str
    contributions: dict[str, float | None] = Field(description="each feature's part of the score")


class OutlierList(BaseModel):
    outliers: list[Outlier] = Field(description="newest first")
