"""The sidecar's reverse proxy: HTTP/1.1 on asyncio protocols with httptools (llhttp).

Chosen by measurement (BENCHMARKS.md): a general-purpose framework spent ~110 µs of CPU per
proxied call before any logging; protocol callbacks with llhttp spend a fraction of that.
Bodies stream both ways with flow control; only the first `max_payload_bytes` of each are
kept for the events. Logging never delays the response: a call's events are deferred to the
sink, which builds and produces them in batches on its own tick, after the answer is written.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools

from logger import http1
from logger.capture import EventBuilder
from logger.exchange import Exchange
from logger.metrics import ProxyMetrics
from logger.sink import EventSink
from logger.upstream import Upstream

SWEEP_MIN_INTERVAL_S = 0.01


class ClientConnection(asyncio.Protocol):
    """One client connection; calls on it are answered one at a time, in order."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._parsing: Exchange | None = None
        self._active: Exchange | None = None
        self._waiting: deque[Exchange] = deque()  # pipelined calls behind the active one
        self._reading_paused = False
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.connections.discard(self)
        if self._active is not None:
            self._active.client_lost()
        self._waiting.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(501, "protocol upgrades are not proxied")
        except httptools.HttpParserError as error:
            self._reject(400, f"malformed HTTP request: {error}")

    def _reject(self, status: int, reason: str) -> None:
        self.write(http1.error_response(status, reason, "", keep_alive=False))
        self.close()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self._reading_paused and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()

    # The client reads our writes slower than the model server sends: pause the model server.
    def pause_writing(self) -> None:
        self._set_upstream_reading(paused=True)

    def resume_writing(self) -> None:
        self._set_upstream_reading(paused=False)

    def _set_upstream_reading(self, paused: bool) -> None:
        upstream = self._active.upstream if self._active is not None else None
        if upstream is not None:
            upstream.set_reading(paused)

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._parsing = Exchange(self)

    def on_url(self, url: bytes) -> None:
        cast(Exchange, self._parsing).url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        cast(Exchange, self._parsing).headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = cast(Exchange, self._parsing)
        exchange.headers_complete(self._parser)
        if self._active is None:
            self._start(exchange)
        else:
            self._waiting.append(exchange)

    def on_body(self, body: bytes) -> None:
        cast(Exchange, self._parsing).request_body(body)

    def on_message_complete(self) -> None:
        cast(Exchange, self._parsing).request_done()
        self._parsing = None

    def _start(self, exchange: Exchange) -> None:
        self._active = exchange
        if exchange.expects_continue:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        exchange.start()

    @property
    def active(self) -> bool:
        return self._active is not None

    def time_out_if_late(self, now: float) -> None:
        if self._active is not None and self._active.deadline <= now:
            self._active.timed_out()

    def exchange_finished(self, exchange: Exchange, close_client: bool) -> None:
        if exchange is not self._active:
            return
        self._active = None
        if close_client:
            self.close()
        elif self._waiting:
            self._start(self._waiting.popleft())


class ProxyServer:
    """Holds what every connection shares: the upstream, the event builder, the sink."""

    def __init__(
        self,
        upstream: Upstream,
        builder: EventBuilder,
        sink: EventSink,
        metrics: ProxyMetrics,
        max_payload_bytes: int,
        upstream_timeout_s: float,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.upstream = upstream
        self.builder = builder
        self.sink = sink
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.upstream_timeout_s = upstream_timeout_s
        self.connections: set[ClientConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls past the timeout are found by a sweep, not a timer per call: arming and
        # cancelling one cost ~10 µs of CPU per call. A late call is answered 504 within a
        # quarter of the timeout (at most a second) after its deadline; a timeout of a few
        # milliseconds is still swept only every SWEEP_MIN_INTERVAL_S, not thousands of times
        # a second.
        self.sweep_interval_s = max(SWEEP_MIN_INTERVAL_S, min(1.0, upstream_timeout_s / 4))
        self._sweep = self.loop.call_later(self.sweep_interval_s, self._sweep_timeouts)

    def _sweep_timeouts(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            connection.time_out_if_late(now)
        self._sweep = self.loop.call_later(self.sweep_interval_s, self._sweep_timeouts)

    def protocol_factory(self) -> Callable[[], ClientConnection]:
        return lambda: ClientConnection(self)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task = self.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def busy(self) -> bool:
        return bool(self._tasks) or any(c.active for c in self.connections)

    async def drain(self, timeout_s: float) -> None:
        """Let calls in progress finish (stop accepting first), then close every connection."""
        deadline = time.monotonic() + timeout_s
        while self.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._sweep.cancel()
        for connection in list(self.connections):
            connection.close()
        self.upstream.close()
