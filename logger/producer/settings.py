"""Settings every producing component shares: the sink's Kafka, memory, spool and admin port."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator

from infermon import defaults
from infermon.settings import KafkaSettings

# librdkafka's own default message.max.bytes is 1,000,000; leave room for headers.
DEFAULT_MAX_PAYLOAD_BYTES = 900_000
# librdkafka's producer refuses a record (key, value and headers) above `message.max.bytes`:
# 1,000,000 bytes unless --kafka-config sets it, within 1,000..1,000,000,000.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
MESSAGE_MAX_BYTES_RANGE = (1_000, 1_000_000_000)


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
