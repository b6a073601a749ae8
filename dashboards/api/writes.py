"""Writes: reference uploads, references pinned from stored windows, feedback labels."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dashboards.auth import require_write
from dashboards.errors import ERROR_RESPONSES

router = APIRouter(dependencies=[Depends(require_write)], responses=ERROR_RESPONSES)
