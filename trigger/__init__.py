"""`infermon trigger`: Kafka-triggered inference, answered on a topic, never lost.

Requests arrive on `--input-topic` (CloudEvents, raw JSON bodies or Knative KafkaSource events,
`inputs.py`); each is sent to the model server (`model_client.py`) and answered by one CloudEvent
on `--output-topic`, with the input's id and key (`outputs.py`). Calls are logged to the log
topic as the sidecar logs proxied ones. How records are scheduled, retried, dead-lettered and
committed is in `service.py`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import uvloop

from infermon.settings import load_settings
from logger.producer.capture import EventBuilder, EventOptions
from logger.producer.runtime import SinkRuntime, configure_logging, wait_for_shutdown_signal
from trigger.metrics import TriggerMetrics
from trigger.model_client import ModelClient
from trigger.service import Trigger
from trigger.settings import TriggerSettings

__all__ = ["TriggerSettings", "main", "payload_event_builder", "serve"]

log = logging.getLogger(__name__)


def payload_event_builder(settings: TriggerSettings) -> EventBuilder:
    """The sidecar's event builder, so that triggered calls are logged like proxied ones."""
    return EventBuilder(
        EventOptions(
            source=settings.event_source,
            inference_service=settings.inference_service,
            namespace=settings.namespace,
            component=settings.component,
            redact=settings.redact,
        )
    )


async def serve(settings: TriggerSettings, client: ModelClient, builder: EventBuilder) -> int:
    """Runs until SIGTERM or SIGINT (0) or a fatal error (1)."""
    runtime = SinkRuntime(settings)
    payload_log = (builder, runtime.sink) if settings.log_topic else None
    trigger = Trigger(settings, client, TriggerMetrics(runtime.registry), payload_log)
    await runtime.start()
    trigger.start()
    runtime.accepting = True
    log.info(
        "trigger: %s -> %s (%s, concurrency %d) -> %s; dead letters to %s; payloads to %s; "
        "admin on :%d",
        settings.input_topic, settings.model_url, settings.protocol, settings.concurrency,
        settings.output_topic, settings.dead_letter_topic, settings.log_topic or "nowhere",
        settings.admin_port,
    )  # fmt: skip
    stop_signal = asyncio.ensure_future(wait_for_shutdown_signal())
    either: list[asyncio.Future[Any]] = [stop_signal, trigger.failure]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if trigger.failure.done():
        log.error("stopping: %s", trigger.failure.result())
    else:
        log.info("signal %d: finishing calls in progress, then committing", stop_signal.result())
    stop_signal.cancel()
    runtime.accepting = False
    await trigger.stop(settings.shutdown_timeout_s)
    await runtime.stop()
    return 1 if trigger.failure.done() else 0


def main(argv: Sequence[str]) -> int:
    settings = load_settings(TriggerSettings, argv, "infermon trigger")
    try:
        client = ModelClient(settings.model_url, settings.timeout)
        builder = payload_event_builder(settings)
    except ValueError as error:  # a bad --model-url or --redact, said plainly
        print(f"infermon trigger: {error}", file=sys.stderr)
        return 2
    configure_logging()
    return uvloop.run(serve(settings, client, builder))
