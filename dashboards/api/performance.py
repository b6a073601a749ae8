"""A model's performance from feedback labels joined with its predictions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from dashboards.api.write_schemas import Performance
from dashboards.auth import require_read
from dashboards.database import Reading
from dashboards.errors import ERROR_RESPONSES, NOT_FOUND, bad_request, not_found
from monitor.store import feedback_read
from monitor.store.schema import as_utc

router = APIRouter(dependencies=[Depends(require_read)], responses=ERROR_RESPONSES)


@router.get("/models/{model}/performance", responses=NOT_FOUND)
def performance(
    model: str,
    connection: Reading,
    since: Annotated[datetime | None, Query(description="instances from this time")] = None,
    until: Annotated[datetime | None, Query(description="instances before this time")] = None,
) -> Performance:
    """Accuracy, precision, recall, F1 (macro) and confusion counts for a classifier; MAE,
    RMSE and bias for a regressor: overall and per window (the model's drift windows, else
    buckets of time). See `monitor.store.feedback_read` for the rules."""
    since = None if since is None else as_utc(since)
    until = None if until is None else as_utc(until)
    if since is not None and until is not None and until <= since:
        raise bad_request("until must be after since")
    if not feedback_read.model_known(connection, model):
        raise not_found(f"no model {model!r} is stored")
    found: dict[str, Any] = feedback_read.performance(connection, model, since, until)
    return Performance.model_validate(found)
