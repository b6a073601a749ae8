"""The admin port: Prometheus metrics, liveness and readiness, never proxied."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infermon.errors import listening_socket


def admin_app(registry: CollectorRegistry, ready: Callable[[], bool]) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        is_ready = ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a loop we own: the host process handles the signals, not uvicorn.

    Its socket is bound when it is made, so a port in use is refused before anything starts.
    """

    def __init__(self, config: uvicorn.Config, listener: socket.socket) -> None:
        super().__init__(config)
        self.listener = listener

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets or [self.listener])

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def embedded_server(
    app: Starlette,
    host: str,
    port: int,
    port_flag: str = "--admin-port",
    host_flag: str = "--admin-host",
) -> EmbeddedServer:
    """A server for `app` on `host:port`, bound now: a port in use is a `UsageError` that
    names `port_flag`."""
    listener = listening_socket(host, port, port_flag, host_flag)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    return EmbeddedServer(config, listener)
