"""A reference upload: its format, its bytes within a bound, and its rows parsed by pandas.

The body is the file itself (no multipart form): CSV (`text/csv`), Parquet
(`application/vnd.apache.parquet`, or `application/octet-stream` with `?format=parquet`) or
JSON lines (`application/x-ndjson`, `application/jsonl`). `?format=` names the format
whatever the content type says.
"""

from __future__ import annotations

import io
from typing import Literal

import pandas as pd
from fastapi import Request

from dashboards.errors import ApiError

UploadFormat = Literal["csv", "parquet", "jsonl"]
MAX_UPLOAD_BYTES = 50 * 1024 * 1024

CONTENT_TYPES: dict[str, UploadFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
}


def upload_format(content_type: str | None, chosen: UploadFormat | None) -> UploadFormat:
    if chosen is not None:
        return chosen
    media = (content_type or "").split(";")[0].strip().lower()
    found = CONTENT_TYPES.get(media)
    if found is None:
        raise ApiError(
            415,
            f"cannot read a reference of type {media or 'none'!r}: send text/csv, "
            "application/vnd.apache.parquet or application/x-ndjson (or ?format=csv|parquet|jsonl)",
        )
    return found


async def read_body(request: Request) -> bytes:
    """The request's body, refused (413) as soon as it is over `MAX_UPLOAD_BYTES`."""
    limit = MAX_UPLOAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"a reference upload may hold at most {limit:,} bytes")


def parse_upload(content: bytes, kind: UploadFormat) -> pd.DataFrame:
    """The upload's rows; a 422 naming what is wrong when pandas cannot read them or they
    hold no row or no column."""
    if not content.strip():
        raise ApiError(422, "the reference upload is empty")
    try:
        frame = _parse(content, kind)
    except Exception as error:  # any parser failure on a user's bytes is a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ApiError(422, f"cannot read the upload as {kind}: {reason}") from None
    if len(frame.columns) == 0:
        raise ApiError(422, f"the {kind} upload holds no column")
    if frame.empty:
        raise ApiError(422, f"the {kind} upload holds no row")
    return frame


def _parse(content: bytes, kind: UploadFormat) -> pd.DataFrame:
    buffer = io.BytesIO(content)
    if kind == "csv":
        return pd.read_csv(buffer)
    if kind == "parquet":
        return pd.read_parquet(buffer)
    frame = pd.read_json(buffer, lines=True)
    if not isinstance(frame, pd.DataFrame):
        raise ValueError("each line must be a JSON object")
    return frame
