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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infermon import events
from infermon.admin import embedded_server
from infermon.events import CloudEvent, InvalidEventError, KafkaRecord
from infermon.excerpts import shortened
from infermon.settings import load_settings
from logger.metrics import IngestMetrics
from logger.producer.runtime import SinkRuntime, configure_logging, wait_for_shutdown_signal
from logger.producer.sink import EventSink, record_fit
from logger.settings import IngestSettings

log = logging.getLogger(__name__)


class RefusedError(Exception):
    """A request answered with `status` and `reason`; nothing of it is written."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _read_body(request: Request, limit_bytes: int) -> bytes:
    too_large = RefusedError(413, f"body above the limit of {limit_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise too_large
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


class RecordBuilder:
    """Received events -> the Kafka records to write, all of them or none (`RefusedError`)."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.record_limit = settings.max_record_bytes

    def parse(
        self, headers: Sequence[tuple[bytes, bytes]], body: bytes, *, batch: bool
    ) -> list[CloudEvent]:
        """The events of a request, each checked; `headers` as the server read them."""
        try:
            if batch:
                received = events.events_from_http_batch(body)
                if len(received) > self.settings.max_batch_events:
                    raise RefusedError(
                        413,
                        f"batch of {len(received)} events, above the limit of "
                        f"{self.settings.max_batch_events}",
                    )
                return received
            return [events.event_from_http(events.cloudevent_http_headers(headers), body)]
        except InvalidEventError as error:
            raise RefusedError(400, str(error)) from error

    def records(self, received: Sequence[CloudEvent], *, batch: bool) -> list[KafkaRecord]:
        """Every event as its record; the first that cannot be written refuses them all."""
        records = []
        for index, event in enumerate(received):
            try:
                records.append(self.record(event))
            except RefusedError as refused:
                if not batch:
                    raise
                raise RefusedError(
                    refused.status, f"event {index} of the batch: {refused.reason}"
                ) from refused
        return records

    def record(self, event: CloudEvent) -> KafkaRecord:
        capped = cap_payload(event, self.settings.max_payload_bytes)
        record = events.event_to_kafka(capped, key=record_key(capped))
        fit = record_fit(record, self.record_limit)
        if not fit.fits:
            size = fit.wire_bytes
            raise RefusedError(
                413,
                f"the event makes a Kafka record of {size} bytes (attributes and key "
                f"{size - len(record.value)}, payload {len(record.value)} after "
                f"--max-payload-bytes), above the producer's message.max.bytes "
                f"{self.record_limit}",
            )
        return record


def ingest_app(sink: EventSink, settings: IngestSettings, metrics: IngestMetrics) -> Starlette:
    builder = RecordBuilder(settings)

    async def records_of(request: Request) -> list[KafkaRecord]:
        body = await _read_body(request, settings.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        batch = content_type.lower().startswith(events.BATCH_CONTENT_TYPE)
        received = builder.parse(request.headers.raw, body, batch=batch)
        return builder.records(received, batch=batch)

    async def receive(request: Request) -> Response:
        try:
            records = await records_of(request)
        except RefusedError as refused:
            return _reject(metrics, refused.status, refused.reason)
        except ClientDisconnect:
            return _reject(metrics, 400, "the client left before its body was read")
        except Exception as error:  # a case no check foresaw: still the sender's input, not a 500
            log.exception("ingest: refusing a request no check foresaw")
            metrics.unforeseen.inc()
            return _reject(metrics, 400, f"unreadable request: {type(error).__name__}: {error}")
        # Only now, every event checked, is anything written: a batch goes whole or not at all.
        for record in records:
            sink.send(record)
        metrics.received.inc(len(records))
        return Response(status_code=202)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def _reject(metrics: IngestMetrics, status: int, reason: str) -> Response:
    metrics.rejected.labels(str(status)).inc()
    return JSONResponse({"error": shortened(reason)}, status_code=status)


async def serve(settings: IngestSettings) -> None:
    runtime = SinkRuntime(settings)
    app = ingest_app(runtime.sink, settings, IngestMetrics(runtime.registry))
    server = embedded_server(app, settings.host, settings.port, "--port", "--host")
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
