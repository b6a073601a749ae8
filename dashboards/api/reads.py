"""GET routes: health, models, inferences, drift reports, outliers."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from dashboards.api.schemas import Health, Readiness
from dashboards.auth import require_read
from dashboards.database import Store
from dashboards.errors import ERROR_RESPONSES

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
