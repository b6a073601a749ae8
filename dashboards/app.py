"""`create_app(settings)`: the dashboard's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from dashboards import metrics, page
from dashboards.api import API_PREFIX, performance, reads, traffic, writes
from dashboards.counts import ModelCounts
from dashboards.database import Database
from dashboards.errors import install_error_handlers
from dashboards.report_cache import ReportCache
from dashboards.settings import DashboardSettings
from dashboards.traffic_cache import TrafficCache


def create_app(settings: DashboardSettings) -> FastAPI:
    database = Database(settings.database_url)
    counts = ModelCounts(database.engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        counts.close()
        database.dispose()

    app = FastAPI(
        title="infermon dashboard",
        version="1",
        summary="What infermon's monitor stored: traffic, drift, outliers, performance.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.model_counts = counts
    app.state.traffic_cache = TrafficCache()
    app.state.report_cache = ReportCache()
    app.state.metrics = metrics.DashboardMetrics(database.engine)
    app.add_middleware(
        metrics.RequestLatency, metrics=app.state.metrics, routes=metrics.RouteTemplates(app)
    )
    install_error_handlers(app)
    app.include_router(reads.health_router)
    app.include_router(reads.router, prefix=API_PREFIX)
    app.include_router(writes.router, prefix=API_PREFIX)
    app.include_router(performance.router, prefix=API_PREFIX)
    app.include_router(traffic.router, prefix=API_PREFIX)
    app.include_router(metrics.router)
    # The page: its routes before the mount, which would otherwise take /static/shared too.
    app.include_router(page.router)
    app.mount("/static", page.static_files(), name="static")
    return app
