"""Settings of `infermon trigger`: where requests come from, where answers go, how hard to try."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import CliSuppress

from infermon import defaults
from infermon.settings import CommaList, split_comma_list
from logger.producer.settings import SinkSettings

# librdkafka's own default; tests lower it, because a group join on tansu waits for it.
DEFAULT_SESSION_TIMEOUT_MS = 45_000


class TriggerSettings(SinkSettings):
    """`infermon trigger`: inference for requests on a Kafka topic, answers on another.

    Payload events for the log topic go through the logger's sink: its buffer, spool and
    delivery settings apply to them.
    """

    COMMAND = "trigger"

    # The log sink's topic is offered as --log-topic; `topic` follows it (see _consistent).
    topic: CliSuppress[str] = Field(defaults.PAYLOADS_TOPIC, description="set by --log-topic")
    log_topic: str = Field(
        defaults.PAYLOADS_TOPIC,
        description="topic for the request and response payload events, in the logger's format; "
        "empty: no payload logging",
    )
    input_topic: str = Field(description="topic of inference requests")
    output_topic: str = Field(description="topic for the answers: one CloudEvent per input")
    group: str = Field(defaults.TRIGGER_GROUP, description="Kafka consumer group")
    model_url: str = Field(defaults.MODEL_URL, description="the model server to call")
    model_name: str = Field(
        "", description="model to call when an event has no modelname extension"
    )
    protocol: Literal["v1", "v2"] = Field(
        "v1", description="inference protocol when an event has no protocol extension"
    )
    concurrency: int = Field(
        16, ge=1, le=4096, description="model calls at once; one at a time per record key"
    )
    # Named as the issue asks for the flag; the unit is seconds.
    timeout: float = Field(30.0, gt=0, description="seconds allowed for one model call")
    max_retries: int = Field(
        3, ge=0, description="retries of a model call that timed out, failed or got a 5xx"
    )
    retry_backoff_s: float = Field(
        0.5, gt=0, description="wait before the first retry; it doubles each retry, up to 30 s"
    )
    max_open_records: int = Field(
        1000, ge=1, description="records read but not yet answered; at this, reading pauses"
    )
    source: str = Field(
        "", description="CloudEvent source of answers; default /infermon/trigger/GROUP"
    )
    inference_service: str = Field("", description="ext inferenceservicename of logged events")
    namespace: str = Field("", description="ext namespace of logged events")
    component: str = Field("predictor", description="ext component of logged events")
    redact: CommaList = Field(
        default_factory=list,
        description="JSONPath expressions whose values are replaced in logged payloads, comma list",
    )
    session_timeout_ms: int = Field(
        DEFAULT_SESSION_TIMEOUT_MS,
        ge=1000,
        description="consumer group session timeout: a member silent this long loses its "
        "partitions",
    )
    admin_port: int = Field(
        defaults.TRIGGER_ADMIN_PORT, description="port for /metrics, /healthz and /readyz"
    )

    _split = field_validator("redact", mode="before")(split_comma_list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.input_topic in (self.output_topic, self.log_topic):
            raise ValueError("--input-topic must differ from --output-topic and --log-topic")
        if self.max_open_records < self.concurrency:
            raise ValueError("--max-open-records must be at least --concurrency")
        self.topic = self.log_topic
        if not self.log_topic:
            self.spool_dir = ""  # nothing is logged, so nothing is spooled
        return self

    @property
    def dead_letter_topic(self) -> str:
        return defaults.dead_letter_topic(self.input_topic)

    @property
    def event_source(self) -> str:
        return self.source or f"/infermon/trigger/{self.group}"
