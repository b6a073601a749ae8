"""What the logger and the ingest endpoint share at run time: sink, spool, admin port, signals."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import CollectorRegistry

from infermon.admin import EmbeddedServer, admin_app, embedded_server
from infermon.errors import UsageError
from logger.producer.metrics import SinkMetrics
from logger.producer.settings import SinkSettings
from logger.producer.sink import EventSink
from logger.producer.spool import DiskSpool

log = logging.getLogger(__name__)


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


class SinkRuntime:
    """Builds the sink and its spool from settings, runs it and the admin port, stops them."""

    def __init__(self, settings: SinkSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        spool_path = settings.spool_path
        self.spool = open_spool(settings) if spool_path else None
        if self.spool is not None and self.spool.pending_records:
            log.info(
                "spool %s holds %d event(s) from an earlier run; they will be replayed",
                spool_path,
                self.spool.pending_records,
            )
        self.sink = EventSink(settings, SinkMetrics(self.registry), self.spool)
        self.accepting = False
        self._tasks: list[asyncio.Task[None]] = []
        self._admin: EmbeddedServer | None = None

    async def start(self) -> None:
        # Bound before the sink runs: a port in use is refused (UsageError) before any event.
        app = admin_app(self.registry, ready=lambda: self.accepting and self.sink.delivering())
        self._admin = embedded_server(app, self.settings.admin_host, self.settings.admin_port)
        self._tasks.append(asyncio.create_task(self.sink.run()))
        self._tasks.append(asyncio.create_task(self._admin.serve()))

    async def stop(self) -> None:
        self.accepting = False
        await self.sink.close(self.settings.shutdown_timeout_s)
        if self._admin is not None:
            self._admin.should_exit = True
        await asyncio.gather(*self._tasks, return_exceptions=True)


def open_spool(settings: SinkSettings) -> DiskSpool:
    """The spool at --spool-dir; one that cannot be made, or that another process holds, is a
    `UsageError` that says so."""
    path = settings.spool_path
    assert path is not None
    try:
        return DiskSpool(
            path, settings.spool_max_bytes, quarantine_max_bytes=settings.quarantine_max_bytes
        )
    except BlockingIOError as error:  # the spool's lock; its message names the owner's pid
        raise UsageError(f"{error.strerror}: give each process its own --spool-dir") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(
            f"cannot use {path} as the spool directory ({reason}): choose another with "
            "--spool-dir, or --spool-dir '' for none"
        ) from None


async def wait_for_shutdown_signal() -> int:
    """Until SIGTERM or SIGINT; returns the signal number."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()

    def receive(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, receive, signum)
    return await received
