"""A model's performance from feedback labels joined with its predictions."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dashboards.auth import require_read
from dashboards.errors import ERROR_RESPONSES

router = APIRouter(dependencies=[Depends(require_read)], responses=ERROR_RESPONSES)
