"""`infermon logger`: the sidecar reverse proxy in front of a model server.

`proxy.py` accepts client connections and enforces the edge limits, `exchange.py` carries one
call between the client and the model server (over the producer core's pool of its connections,
`logger.producer.upstream`) and `http1.py` holds the HTTP/1.1 rules; each call's events go to the
producer core.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
from collections.abc import Sequence
from dataclasses import replace

import uvloop

from infermon.errors import listening_socket
from infermon.settings import load_settings
from logger.metrics import ProxyMetrics
from logger.producer.capture import EventBuilder, EventOptions
from logger.producer.runtime import SinkRuntime, configure_logging, wait_for_shutdown_signal
from logger.producer.upstream import Upstream
from logger.settings import LoggerSettings
from logger.sidecar.proxy import EdgeLimits, ProxyServer

log = logging.getLogger(__name__)

# File descriptors kept for everything but client connections: upstream connections, Kafka,
# the spool, the admin port (which must answer while the connection cap is reached).
RESERVED_FILE_DESCRIPTORS = 512


def connection_cap(wanted: int) -> int:
    """`wanted`, or fewer if the process may not open that many files; raises the soft limit
    on open files to the hard one first, as servers commonly do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. an unlimited hard limit the kernel will not take
            hard = soft
    available = hard - RESERVED_FILE_DESCRIPTORS
    if hard != resource.RLIM_INFINITY and wanted > available:
        log.warning(
            "--max-connections %d lowered to %d: the process may open %d files",
            wanted, max(1, available), hard,
        )  # fmt: skip
        return max(1, available)
    return wanted


def event_options(settings: LoggerSettings) -> EventOptions:
    """What the sidecar's events say of where they come from, from its settings."""
    return EventOptions(
        source=settings.event_source,
        inference_service=settings.inference_service,
        namespace=settings.namespace,
        component=settings.component,
        endpoint=settings.endpoint,
        annotations=settings.annotations,
        mode=settings.mode,
        sample_rate=settings.sample_rate,
        redact=settings.redact,
        metadata_headers=settings.metadata_headers,
    )


async def serve(settings: LoggerSettings, upstream: Upstream, builder: EventBuilder) -> None:
    # Bound before anything starts: a port in use is refused at once, naming its flag.
    proxy_socket = listening_socket(settings.host, settings.port, "--port")
    runtime = SinkRuntime(settings)
    limits = EdgeLimits.of(settings)
    limits = replace(limits, max_connections=connection_cap(limits.max_connections))
    proxy = ProxyServer(
        upstream=upstream,
        builder=builder,
        sink=runtime.sink,
        metrics=ProxyMetrics(runtime.registry),
        max_payload_bytes=settings.max_payload_bytes,
        upstream_timeout_s=settings.upstream_timeout_s,
        limits=limits,
    )
    proxy.metrics.watch_connections(proxy.connections)
    await runtime.start()
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(proxy.protocol_factory(), sock=proxy_socket, backlog=2048)
    runtime.accepting = True
    log.info(
        "logger on %s:%d -> %s; events (mode %s) to %s on %s; admin on :%d",
        settings.host,
        settings.port,
        settings.model_url,
        settings.mode,
        settings.topic,
        settings.kafka_bootstrap,
        settings.admin_port,
    )
    signum = await wait_for_shutdown_signal()
    log.info("signal %d: finishing calls in progress, then flushing events", signum)
    runtime.accepting = False
    listener.close()
    await proxy.drain(settings.shutdown_timeout_s / 2)
    await runtime.stop()
    log.info("logger stopped")


def main(argv: Sequence[str]) -> int:
    settings = load_settings(LoggerSettings, argv, "infermon logger")
    try:
        upstream = Upstream(settings.model_url, settings.upstream_idle_reuse_s)
        builder = EventBuilder(event_options(settings))
    except ValueError as error:  # a bad --model-url or --redact, said plainly
        print(f"infermon logger: {error}", file=sys.stderr)
        return 2
    configure_logging()
    uvloop.run(serve(settings, upstream, builder))
    return 0
