"""Settings of the logger sidecar and the ingest endpoint (one class each, sharing the sink's)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from infermon import defaults
from infermon.settings import CommaList, KafkaSettings, split_comma_list

# librdkafka's own default message.max.bytes is 1,000,000; leave room for headers.
DEFAULT_MAX_PAYLOAD_BYTES = 900_000
# A pooled model-server connection idle longer than this is not reused. A request written on a
# connection the server is closing at that moment cannot be sent again (the server may have run
# it), so connections retire before servers commonly close them: uvicorn, which KServe's Python
# server runs on, closes a kept-alive connection after 5 s idle.
DEFAULT_IDLE_REUSE_S = 4.0
# librdkafka's producer refuses a record (key, value and headers) above `message.max.bytes`:
# 1,000,000 bytes unless --kafka-config sets it, within 1,000..1,000,000,000.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
MESSAGE_MAX_BYTES_RANGE = (1_000, 1_000_000_000)
# The sidecar's edge limits, in line with what nginx and Envoy set by default: Envoy allows
# 60 KiB of request headers and 100 header fields (431 above); nginx waits 60 s for a request
# head, 60 s between two reads of a body and 75 s on an idle kept-alive connection.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_PIPELINED_REQUESTS = 16
DEFAULT_HEADER_TIMEOUT_S = 60.0
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_IDLE_TIMEOUT_S = 75.0
DEFAULT_MAX_CONNECTIONS = 4096


class SinkSettings(KafkaSettings):
    """How events reach Kafka: the in-memory byte budget, the disk spool, the admin port."""

    # The command's name: its spool is <data-dir>/spool/<this>, so no two components share one.
    COMMAND: ClassVar[str]

    topic: str = Field(defaults.PAYLOADS_TOPIC, description="Kafka topic for payload events")
    buffer_max_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="bytes of events held in memory waiting for Kafka before they spill to disk",
    )
    delivery_timeout_ms: int = Field(
        30_000, gt=0, description="unacknowledged by Kafka after this, an event goes to the spool"
    )
    spool_dir: str | None = Field(
        None,
        description="append-only disk spool for events Kafka cannot take now; "
        "default <data-dir>/spool/<command>; empty disables it",
    )
    spool_max_bytes: int = Field(
        1024 * 1024 * 1024, gt=0, description="when the spool holds this much, events are dropped"
    )
    max_payload_bytes: int = Field(
        DEFAULT_MAX_PAYLOAD_BYTES,
        ge=0,
        description="payloads above this are cut to it and marked truncated=true; 0: no cap",
    )
    quarantine_max_bytes: int = Field(
        256 * 1024 * 1024,
        gt=0,
        description="bytes of events Kafka refused for good kept in the spool directory's "
        "quarantine file; beyond it such events are dropped",
    )
    admin_port: int = Field(
        defaults.LOGGER_ADMIN_PORT, description="port for /metrics, /healthz and /readyz"
    )
    admin_host: str = Field("0.0.0.0", description="address the admin port binds to")
    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="on SIGTERM, time allowed to flush events to Kafka or the spool"
    )

    @field_validator("kafka_config")
    @classmethod
    def _message_max_bytes_in_range(cls, config: dict[str, str]) -> dict[str, str]:
        raw = config.get("message.max.bytes")
        low, high = MESSAGE_MAX_BYTES_RANGE
        if raw is not None and not (raw.strip().isdigit() and low <= int(raw) <= high):
            raise ValueError(f"message.max.bytes must be an integer from {low} to {high}")
        return config

    @property
    def spool_path(self) -> Path | None:
        if self.spool_dir is None:
            return defaults.spool_dir(self.data_dir, self.COMMAND)
        return Path(self.spool_dir) if self.spool_dir else None

    @property
    def max_record_bytes(self) -> int:
        """The producer's `message.max.bytes`: no record above it can be sent."""
        raw = self.kafka_config.get("message.max.bytes")
        return int(raw) if raw is not None else DEFAULT_MESSAGE_MAX_BYTES


class LoggerSettings(SinkSettings):
    """`infermon logger`: the sidecar reverse proxy."""

    COMMAND = "logger"

    model_url: str = Field(defaults.MODEL_URL, description="the model server to proxy to")
    host: str = Field("0.0.0.0", description="address the proxy binds to")
    port: int = Field(defaults.LOGGER_PORT, description="port the proxy listens on")
    mode: Literal["all", "request", "response"] = Field(
        "all", description="which events to log (KServe's logger.mode)"
    )
    inference_service: str = Field("", description="ext inferenceservicename")
    namespace: str = Field("", description="ext namespace")
    component: str = Field("predictor", description="ext component")
    endpoint: str = Field("", description="ext endpoint")
    source: str = Field("", description="CloudEvent source; default http://localhost:PORT/")
    metadata_headers: CommaList = Field(
        default_factory=list,
        description="request headers copied into ext metadata, comma list, any case",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="ext annotations, e.g. --annotations team=fraud"
    )
    sample_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="fraction of calls logged; request and response together"
    )
    redact: CommaList = Field(
        default_factory=list,
        description="JSONPath expressions whose values are replaced before logging, comma list, "
        "e.g. '$.instances[*].ssn'",
    )
    upstream_timeout_s: float = Field(
        600.0, gt=0, description="time allowed for the model server's response"
    )
    upstream_idle_reuse_s: float = Field(
        DEFAULT_IDLE_REUSE_S,
        gt=0,
        description="a kept-alive model-server connection idle longer is not reused (keep "
        "it below the server's own keep-alive timeout: a request is never sent twice)",
    )
    # Edge limits: what one client may hold of the proxy.
    max_header_bytes: int = Field(
        DEFAULT_MAX_HEADER_BYTES, gt=0, description="request line and headers above this: 431"
    )
    max_headers: int = Field(
        DEFAULT_MAX_HEADERS, gt=0, description="more request header fields than this: 431"
    )
    max_pipelined_requests: int = Field(
        DEFAULT_MAX_PIPELINED_REQUESTS,
        ge=0,
        description="requests read ahead of the one being answered on a connection; "
        "one more: 503 and close",
    )
    header_timeout_s: float = Field(
        DEFAULT_HEADER_TIMEOUT_S, gt=0, description="time allowed for a request's head: 408"
    )
    body_timeout_s: float = Field(
        DEFAULT_BODY_TIMEOUT_S, gt=0, description="longest wait between reads of a body: 408"
    )
    idle_timeout_s: float = Field(
        DEFAULT_IDLE_TIMEOUT_S, gt=0, description="an idle kept-alive connection is closed then"
    )
    max_connections: int = Field(
        DEFAULT_MAX_CONNECTIONS, gt=0, description="client connections at once; above: 503"
    )

    _split = field_validator("metadata_headers", "redact", mode="before")(split_comma_list)

    @field_validator("model_url")
    @classmethod
    def _an_http_url(cls, model_url: str) -> str:
        parts = urlsplit(model_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("must be http://host[:port][/prefix]")
        return model_url

    @property
    def event_source(self) -> str:
        return self.source or f"http://localhost:{self.port}/"


class IngestSettings(SinkSettings):
    """`infermon ingest`: the HTTP CloudEvents receiver."""

    COMMAND = "ingest"

    host: str = Field("0.0.0.0", description="address the receiver binds to")
    port: int = Field(defaults.INGEST_PORT, description="port the receiver listens on")
    admin_port: int = Field(
        defaults.INGEST_ADMIN_PORT, description="port for /metrics, /healthz and /readyz"
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="requests above this are refused with 413"
    )
    max_batch_events: int = Field(
        10_000, gt=0, description="batches of more events than this are refused with 413"
    )
