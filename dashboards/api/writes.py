"""Writes: reference uploads, references pinned from stored windows, feedback labels.

Each needs `Authorization: Bearer <INFERMON_API_TOKEN>`. A reference is stored as data with a
new version, pending: the monitor summarises it before the model's next window, and the
report of every window after says which reference version it compared with.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine

from dashboards.api.uploads import (
    MAX_UPLOAD_BYTES,
    UploadFormat,
    parse_upload,
    read_body,
    upload_format,
)
from dashboards.api.write_schemas import (
    FeedbackBody,
    FeedbackItem,
    FeedbackStored,
    PinnedRange,
    ReferenceVersion,
)
from dashboards.auth import require_write
from dashboards.database import Store
from dashboards.errors import ERROR_RESPONSES, NOT_FOUND, ApiError, ErrorBody, not_found
from monitor.store import feedback_read, user_write
from monitor.store.schema import as_utc
from monitor.store.windows import Reference

router = APIRouter(dependencies=[Depends(require_write)], responses=ERROR_RESPONSES)

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": f"the reference's rows: CSV, Parquet or JSON lines, at most "
        f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB",
        "content": {
            media: {"schema": {"type": "string", "format": "binary"}}
            for media in (
                "text/csv",
                "application/vnd.apache.parquet",
                "application/x-ndjson",
                "application/octet-stream",
            )
        },
    }
}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    413: {"model": ErrorBody, "description": "an upload over the size bound"},
    415: {"model": ErrorBody, "description": "a format that is not CSV, Parquet or JSON lines"},
}


def _version(reference: Reference) -> ReferenceVersion:
    return ReferenceVersion(
        model=reference.model, version=reference.version, source=reference.source,
        origin=reference.origin, rows=reference.rows, columns=reference.columns,
        created_at=reference.created_at, pending=reference.pending,
    )  # fmt: skip


def _known(engine: Engine, model: str) -> None:
    with engine.connect() as connection:
        if not feedback_read.model_known(connection, model):
            raise not_found(f"no model {model!r} is stored")


def _rejected(error: user_write.ReferenceRejectedError) -> ApiError:
    return ApiError(422, str(error))


@router.put(
    "/models/{model}/reference",
    status_code=201,
    responses=_UPLOAD_ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload the model's reference (CSV, Parquet or JSON lines)",
)
async def upload_reference(
    model: str,
    request: Request,
    store: Store,
    format: Annotated[UploadFormat | None, Query(description="overrides the content type")] = None,
) -> ReferenceVersion:
    """The upload's rows become the model's next reference version."""
    kind = upload_format(request.headers.get("content-type"), format)
    await run_in_threadpool(_known, store.engine, model)
    content = await read_body(request)
    frame = await run_in_threadpool(parse_upload, content, kind)
    source = user_write.upload_source(kind, content)
    try:
        added = await run_in_threadpool(
            user_write.add_reference, store.engine, model, frame, source
        )
    except user_write.ReferenceRejectedError as error:
        raise _rejected(error) from None
    return _version(added)


@router.post(
    "/models/{model}/reference/from-window",
    status_code=201,
    responses=NOT_FOUND,
    summary="Pin the model's stored instances in [start, end) as its reference",
)
def pin_reference(model: str, pinned: PinnedRange, store: Store) -> ReferenceVersion:
    """The stored instances in [start, end) (the oldest 100,000) become the model's next
    reference version; windows of time then take instances after the last of them."""
    _known(store.engine, model)
    try:
        added = user_write.pin_range(store.engine, model, as_utc(pinned.start), as_utc(pinned.end))
    except user_write.ReferenceRejectedError as error:
        raise _rejected(error) from None
    return _version(added)


@router.post("/feedback", summary="Ground truth: one label or a list of them")
def post_feedback(body: Annotated[FeedbackBody, Body()], store: Store) -> FeedbackStored:
    """Labels for instances (`row_index` 0 by default); a later label for an instance
    replaces the earlier one. A label for an inference not stored yet is kept, and counts in
    the model's performance once the inference is stored."""
    items: list[FeedbackItem] = body if isinstance(body, list) else [body]
    labels = [user_write.Feedback(i.request_id, i.row_index, i.label) for i in items]
    return FeedbackStored(
        received=len(items), stored=user_write.store_feedback(store.engine, labels)
    )
