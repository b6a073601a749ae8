"""Names and defaults that components must agree on, each declared once: topics, consumer
groups, ports and folders.

They sit side by side so that they cannot collide: `infermon logger`, `ingest`, `trigger` and
`monitor`, started with their defaults from one directory on one host, run together, each on
its own ports and with its own spool under one data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# Topics
PAYLOADS_TOPIC: Final = "infermon.payloads"  # request and response events of every call
DETECTIONS_TOPIC: Final = "infermon.detections"  # what the drift and outlier detectors find
DEAD_LETTER_SUFFIX: Final = ".dlq"  # a topic's records that could not be handled

# Consumer groups
MONITOR_GROUP: Final = "infermon-monitor"
TRIGGER_GROUP: Final = "infermon-trigger"

# Ports. The logger takes KServe's agent's port (9081) in front of the model server's (8080).
KAFKA_PORT: Final = 9092  # Kafka's own default; `infermon up` starts its broker there
KAFKA_BOOTSTRAP: Final = f"127.0.0.1:{KAFKA_PORT}"
MODEL_URL: Final = "http://127.0.0.1:8080"
LOGGER_PORT: Final = 9081
INGEST_PORT: Final = 8082
# Admin ports (/metrics, /healthz, /readyz): one per component, none shared.
LOGGER_ADMIN_PORT: Final = 9091
INGEST_ADMIN_PORT: Final = 9093
MONITOR_ADMIN_PORT: Final = 9094
TRIGGER_ADMIN_PORT: Final = 9095
# The dashboard: its API, its page and its /metrics on one port.
DASHBOARD_PORT: Final = 8000

# Folders: everything a component keeps on disk lives under one data directory.
DATA_DIR: Final = "infermon-data"
DATABASE_FILE: Final = "infermon.db"


def dead_letter_topic(topic: str) -> str:
    """Where the records of `topic` that could not be handled go."""
    return topic + DEAD_LETTER_SUFFIX


def spool_dir(data_dir: str | Path, component: str) -> Path:
    """A component's own disk spool: two components never lock the same one."""
    return Path(data_dir) / "spool" / component


def sqlite_url(data_dir: str | Path) -> str:
    """The default store: SQLite in the data directory."""
    return f"sqlite:///{Path(data_dir) / DATABASE_FILE}"
