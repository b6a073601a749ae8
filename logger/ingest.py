"""`infermon ingest`: an HTTP CloudEvents receiver that writes every event to Kafka.

Point an InferenceService's `logger.url` here and it works unchanged: KServe's agent sends
HTTP binary mode; structured mode and `application/cloudevents-batch+json` batches are
accepted too. Each event is written in Kafka binary mode with its attributes kept, keyed
by its request id, through the same sink (and spool) as the logger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infermon import events
from infermon.admin import embedded_server
from infermon.events import CloudEvent, InvalidEventError
from infermon.settings import load_settings
from logger.metrics import IngestMetrics
from logger.runtime import SinkRuntime, configure_logging, wait_for_shutdown_signal
from logger.settings import IngestSettings
from logger.sink import EventSink

log = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    pass


async def _read_body(request: Request, limit_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def record_key(event: CloudEvent) -> str:
    """The request id pairs a call's events on one partition; KServe's shared `id` is that id."""
    return str(
        event.get_extension(events.EXT_REQUEST_ID)
        or event.get_extension("partitionkey")
        or event.get_id()
    )


def cap_payload(event: CloudEvent, max_payload_bytes: int) -> CloudEvent:
    data = events.payload_bytes(event)
    if not max_payload_bytes or len(data) <= max_payload_bytes:
        return event
    attributes = {**event.get_attributes(), events.EXT_TRUNCATED: "true"}
    return CloudEvent(attributes, data[:max_payload_bytes])


def ingest_app(sink: EventSink, settings: IngestSettings, metrics: IngestMetrics) -> Starlette:
    async def receive(request: Request) -> Response:
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except BodyTooLargeError:
            return _reject(metrics, 413, f"body above the limit of {settings.max_body_bytes} bytes")
        content_type = request.headers.get("content-type", "")
        try:
            if content_type.lower().startswith(events.BATCH_CONTENT_TYPE):
                received = events.events_from_http_batch(body)
            else:
                received = [events.event_from_http(dict(request.headers), body)]
        except InvalidEventError as error:
            return _reject(metrics, 400, str(error))
        for event in received:
            capped = cap_payload(event, settings.max_payload_bytes)
            sink.send(events.event_to_kafka(capped, key=record_key(capped)))
        metrics.received.inc(len(received))
        return Response(status_code=202)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def _reject(metrics: IngestMetrics, status: int, reason: str) -> Response:
    metrics.rejected.labels(str(status)).inc()
    return JSONResponse({"error": reason}, status_code=status)


async def serve(settings: IngestSettings) -> None:
    runtime = SinkRuntime(settings)
    app = ingest_app(runtime.sink, settings, IngestMetrics(runtime.registry))
    server = embedded_server(app, settings.host, settings.port)
    await runtime.start()
    server_task = asyncio.create_task(server.serve())
    runtime.accepting = True
    log.info(
        "ingest on %s:%d -> %s on %s; admin on :%d",
        settings.host,
        settings.port,
        settings.topic,
        settings.kafka_bootstrap,
        settings.admin_port,
    )
    await wait_for_shutdown_signal()
    runtime.accepting = False
    server.should_exit = True
    await server_task
    await runtime.stop()
    log.info("ingest stopped")


def main(argv: Sequence[str]) -> int:
    settings = load_settings(IngestSettings, argv, "infermon ingest")
    configure_logging()
    uvloop.run(serve(settings))
    return 0
