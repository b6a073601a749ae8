"""Settings of the logger sidecar and the ingest endpoint (one class each, sharing the sink's)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from infermon import defaults
from infermon.settings import CommaList, split_comma_list
from logger.producer.settings import SinkSettings
from logger.producer.upstream import DEFAULT_IDLE_REUSE_S

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
