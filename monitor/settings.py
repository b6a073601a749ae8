"""Settings of `infermon monitor`, the consumer that fills the store."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from infermon import defaults
from infermon.settings import InfermonSettings, KafkaSettings
from monitor.payloads import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_ROWS
from monitor.store.engine import check_database_url


class DatabaseSettings(InfermonSettings):
    """The store's address, shared by `infermon monitor`, `infermon db` and `infermon counts`."""

    database_url: str = Field(
        "",
        description="SQLAlchemy URL (postgresql+psycopg://... for PostgreSQL); "
        "default sqlite:///<data-dir>/infermon.db",
    )

    @model_validator(mode="after")
    def _a_database_url(self) -> Self:
        """An empty URL is the default, `<data-dir>/infermon.db`; any other must be a URL of
        a database the store knows."""
        if not self.database_url:
            self.database_url = defaults.sqlite_url(self.data_dir)
        check_database_url(self.database_url)
        return self


class MonitorSettings(KafkaSettings, DatabaseSettings):
    topic: str = Field(defaults.PAYLOADS_TOPIC, description="topic of payload events to consume")
    group: str = Field(defaults.MONITOR_GROUP, description="Kafka consumer group")
    dlq_topic: str = Field("", description="dead-letter topic; default <topic>.dlq")
    batch_max_events: int = Field(5000, gt=0, description="events written per transaction, at most")
    batch_max_wait_ms: int = Field(200, gt=0, description="longest wait to fill a batch")
    max_event_bytes: int = Field(
        10 * 1024 * 1024, gt=0, description="records above this go to the dead-letter topic"
    )
    max_instances_per_payload: int = Field(
        DEFAULT_MAX_ROWS,
        gt=0,
        description="instances exploded from one payload, at most; the rest are counted"
        " (the inference's row count, the event's parse_error) and kept in the raw payload",
    )
    batch_max_instances: int = Field(
        DEFAULT_MAX_BATCH_ROWS,
        gt=0,
        description="instances exploded per write batch, at most (~450 bytes each in memory);"
        " a batch that would explode more is split",
    )
    batch_max_bytes: int = Field(
        DEFAULT_MAX_BATCH_BYTES,
        gt=0,
        description="record bytes per write batch, at most; a batch is split above it (a"
        " larger record is a batch of its own)",
    )
    dlq_max_bytes: int = Field(
        900_000,
        ge=4096,
        description="a dead letter larger than this (key, value and headers) is cut to fit:"
        " its value shortened, the original size and sha256 in headers; below the producer's"
        " message.max.bytes (1,000,000)",
    )
    orphan_timeout_s: float = Field(
        300.0, gt=0, description="a request with no response after this is marked orphaned"
    )
    retention_days: float = Field(0.0, ge=0, description="delete data older than this; 0: keep")
    session_timeout_ms: int = Field(45_000, gt=0, description="consumer group session timeout")
    detection: bool = Field(
        True, description="evaluate drift windows in this monitor (--no-detection: store only)"
    )
    config: str = Field(
        "",
        description="per-model drift and outlier detection (YAML); none: every model gets the"
        " defaults (reference: its first 1000 instances; windows of 1000 instances)",
    )
    window_lease_s: float = Field(
        30.0,
        gt=0,
        description="a window claimed by a monitor that has not stored its report after this"
        " is evaluated by another",
    )
    window_settle_s: float = Field(
        5.0,
        ge=0,
        description="a window closes once its newest instance (count windows) or its end (time"
        " windows) is this old, so that instances on their way through the group are in it",
    )
    window_late_check_s: float = Field(
        10.0,
        gt=0,
        description="how often the windows done in the last day are recounted; one with late"
        " instances gets a revised report",
    )
    detection_poll_s: float = Field(1.0, gt=0, description="how often closed windows are sought")
    detections_topic: str = Field(
        defaults.DETECTIONS_TOPIC, description="topic of the drift and outlier CloudEvents"
    )
    admin_host: str = Field("0.0.0.0", description="address of the metrics and health port")
    admin_port: int = Field(
        defaults.MONITOR_ADMIN_PORT, description="port for /metrics, /healthz and /readyz; 0: none"
    )

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or defaults.dead_letter_topic(self.topic)
