"""The sidecar's reverse proxy: HTTP/1.1 on asyncio protocols with httptools (llhttp).

Chosen by measurement (BENCHMARKS.md): a general-purpose framework spent ~110 µs of CPU per
proxied call before any logging; protocol callbacks with llhttp spend a fraction of that.
Bodies stream both ways with flow control; only the first `max_payload_bytes` of each are
kept for the events. Logging never delays the response: a call's events are deferred to the
sink, which builds and produces them in batches on its own tick, after the answer is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import httptools

from logger import settings
from logger.metrics import ProxyMetrics
from logger.producer.capture import EventBuilder
from logger.producer.sink import EventSink
from logger.producer.upstream import Upstream
from logger.sidecar import http1
from logger.sidecar.exchange import Exchange

log = logging.getLogger(__name__)

SWEEP_MIN_INTERVAL_S = 0.01
SWEEP_MAX_INTERVAL_S = 1.0


@dataclass(frozen=True)
class EdgeLimits:
    """What one client may hold of the proxy: bytes, requests, time, connections."""

    max_header_bytes: int = settings.DEFAULT_MAX_HEADER_BYTES
    max_headers: int = settings.DEFAULT_MAX_HEADERS
    max_pipelined: int = settings.DEFAULT_MAX_PIPELINED_REQUESTS
    header_timeout_s: float = settings.DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = settings.DEFAULT_BODY_TIMEOUT_S
    idle_timeout_s: float = settings.DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = settings.DEFAULT_MAX_CONNECTIONS

    @classmethod
    def of(cls, logger_settings: settings.LoggerSettings) -> EdgeLimits:
        return cls(
            max_header_bytes=logger_settings.max_header_bytes,
            max_headers=logger_settings.max_headers,
            max_pipelined=logger_settings.max_pipelined_requests,
            header_timeout_s=logger_settings.header_timeout_s,
            body_timeout_s=logger_settings.body_timeout_s,
            idle_timeout_s=logger_settings.idle_timeout_s,
            max_connections=logger_settings.max_connections,
        )


class _Stopped:
    """Stands in for the parser once a connection is refused: what the client still sends is
    not parsed (nor, with reading paused, read)."""

    @staticmethod
    def feed_data(data: bytes) -> None:
        return None


class _Trailers(list[tuple[bytes, bytes]]):
    """Where a chunked request's trailer fields go: counted against the header limits, and
    dropped (they are not forwarded: the proxy frames the body itself)."""

    def __init__(self, limits: EdgeLimits) -> None:
        super().__init__()
        self._bytes_left = limits.max_header_bytes
        self._count_left = limits.max_headers

    def append(self, field: tuple[bytes, bytes]) -> None:
        self._bytes_left -= len(field[0]) + len(field[1])
        self._count_left -= 1
        if self._bytes_left < 0 or self._count_left < 0:
            raise http1.Refusal(431, "trailer fields over the header limits", "header_too_large")


_STOPPED = _Stopped()
# What the timeout sweep last saw a connection doing (with what tells one wait from the next).
_READING_BODY, _READING_HEAD, _IDLE = "body", "head", "idle"


class ClientConnection(asyncio.Protocol):
    """One client connection; calls on it are answered one at a time, in order.

    While a call is answered and the next is already read, reading stops: no more than
    `max_pipelined` requests are ever parsed ahead, whatever a client sends."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self._parser: httptools.HttpRequestParser | _Stopped = httptools.HttpRequestParser(self)
        self._parsing: Exchange | None = None
        self._header_sink: list[tuple[bytes, bytes]] = []
        self._head_open = False  # between a request's first byte and the end of its headers
        self._head_bytes = 0  # read while the head was open, from the read after it opened
        self._reads = 0
        self._read_size = 0  # of the read being parsed
        self._active: Exchange | None = None
        self._waiting: deque[Exchange] = deque()  # pipelined calls behind the active one
        self._refusal_answer: bytes | None = None  # sent after the calls before it, then close
        self._reading_paused = False
        self._closing = False
        self._stopped = False
        self._sweep_mark: tuple[str, object] | None = None
        self._sweep_mark_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        connections = self.server.connections
        if len(connections) >= self.limits.max_connections:
            self.server.count_refusal("connection_limit")
            self.write(http1.error_response(503, "too many connections", "", keep_alive=False))
            self.close()
            return
        connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.connections.discard(self)
        if self._active is not None:
            self._active.client_lost()
        self._waiting.clear()

    def data_received(self, data: bytes) -> None:
        self._reads += 1
        self._read_size = size = len(data)
        if self._head_open:  # a head still open from an earlier read: all of this read is head
            self._head_bytes += size
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._refuse(self._refusal_of(error))
            return
        except httptools.HttpParserUpgrade:  # refused at its headers already; kept as a guard
            self._refuse(http1.Refusal(501, "protocol upgrades are not proxied", "upgrade"))
            return
        if self._head_open:  # a head left open is held until it ends: keep it bounded
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._head_too_large())
            elif len(self._header_sink) > self.limits.max_headers:
                self._refuse(self._too_many_headers())

    def _head_too_large(self) -> http1.Refusal:
        limit = self.limits.max_header_bytes
        return http1.Refusal(
            431, f"request line and headers above {limit} bytes", "header_too_large"
        )

    def _too_many_headers(self) -> http1.Refusal:
        limit = self.limits.max_headers
        return http1.Refusal(431, f"more than {limit} header fields", "too_many_headers")

    @staticmethod
    def _refusal_of(error: httptools.HttpParserError) -> http1.Refusal:
        cause = error.__context__  # what a callback raised, kept there by httptools
        if isinstance(cause, http1.Refusal):
            return cause
        if cause is not None:
            log.error("a request callback failed", exc_info=cause)
        return http1.Refusal(400, f"malformed HTTP request: {error}", "malformed")

    def _refuse(self, refusal: http1.Refusal) -> None:
        """Answer `refusal` in its turn and close; nothing more is read or forwarded."""
        self.server.count_refusal(refusal.cause)
        self._parser = _STOPPED
        self._stopped = True
        self._head_open = False
        self.pause_reading()
        parsing, self._parsing = self._parsing, None
        if parsing is not None and parsing is self._active:
            parsing.request_failed(refusal.status, refusal.reason)
            return
        if parsing is not None and self._waiting and self._waiting[-1] is parsing:
            self._waiting.pop()
        answer = http1.error_response(refusal.status, refusal.reason, "", keep_alive=False)
        if self._active is None:
            self.write(answer)
            self.close()
        else:
            self._refusal_answer = answer

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
        # Not while a pipelined call waits its turn, nor once the connection is refused.
        if self._reading_paused and not (self._waiting or self._closing or self._stopped):
            self._reading_paused = False
            cast(asyncio.Transport, self.transport).resume_reading()

    # The client reads our writes slower than the model server sends: pause the model server.
    def pause_writing(self) -> None:
        self._set_upstream_reading(paused=True)

    def resume_writing(self) -> None:
        self._set_upstream_reading(paused=False)

    def _set_upstream_reading(self, paused: bool) -> None:
        upstream = self._active.upstream if self._active is not None else None
        if upstream is not None:
            upstream.set_reading(paused)

    # httptools callbacks; a limit or rule broken raises http1.Refusal, which stops the parser
    def on_message_begin(self) -> None:
        self._parsing = exchange = Exchange(self)
        self._header_sink = exchange.headers
        self._head_open = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        cast(Exchange, self._parsing).url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_sink.append((name, value))

    def expect_trailers(self) -> None:
        """A chunked request: header fields after its body are trailers."""
        self._header_sink = _Trailers(self.limits)

    def on_headers_complete(self) -> None:
        self._head_open = False
        exchange = cast(Exchange, self._parsing)
        # The reads this head came in bound its size; only when they could hold more than
        # the limit is it measured.
        max_bytes = self.limits.max_header_bytes
        if self._head_bytes + self._read_size > max_bytes and exchange.head_size() > max_bytes:
            raise self._head_too_large()
        if len(exchange.headers) > self.limits.max_headers:
            raise self._too_many_headers()
        if self._parser.should_upgrade():  # type: ignore[union-attr]  # parsing: not stopped
            raise http1.Refusal(501, "protocol upgrades are not proxied", "upgrade")
        exchange.headers_complete(self._parser)  # type: ignore[arg-type]  # as above
        if self._active is None:
            self._start(exchange)
        elif len(self._waiting) < self.limits.max_pipelined:
            self._waiting.append(exchange)
            self.pause_reading()  # the next is read once this one's turn comes
        else:
            raise http1.Refusal(503, "too many pipelined requests", "pipeline")

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

    def sweep(self, now: float) -> None:
        """Called every sweep interval: the upstream timeout of the call in progress, and how
        long the client has kept the proxy waiting (for a head, a body, a next request)."""
        mark: tuple[str, object]  # what the client is at, and a token that changes as it moves
        active = self._active
        if active is not None:
            if active.deadline <= now:
                active.timed_out()
                return
            if active.request_complete or self._reading_paused:
                self._sweep_mark = None  # the model server's turn, or we hold the client
                return
            mark, limit = (_READING_BODY, self._reads), self.limits.body_timeout_s
        elif self._stopped or self._closing:
            return
        elif self._head_open:
            mark, limit = (_READING_HEAD, self._parsing), self.limits.header_timeout_s
        else:
            mark, limit = (_IDLE, self._reads), self.limits.idle_timeout_s
        if mark != self._sweep_mark:
            self._sweep_mark, self._sweep_mark_since = mark, now
        elif now - self._sweep_mark_since >= limit:
            self._time_out(mark[0])

    def _time_out(self, waiting_for: str) -> None:
        if waiting_for == _IDLE:
            self.server.count_refusal("idle_timeout")
            self.close()
        elif waiting_for == _READING_HEAD:
            self._refuse(http1.Refusal(408, "the request head took too long", "header_timeout"))
        else:
            self._refuse(http1.Refusal(408, "the request body stalled", "body_timeout"))

    def exchange_finished(self, exchange: Exchange, close_client: bool) -> None:
        if exchange is not self._active:
            return
        self._active = None
        if close_client:
            self.close()
        elif self._waiting:
            self._start(self._waiting.popleft())
            self.resume_reading()  # unless another still waits
        elif self._refusal_answer is not None:
            self.write(self._refusal_answer)
            self.close()


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
        limits: EdgeLimits | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.upstream = upstream
        self.builder = builder
        self.sink = sink
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.upstream_timeout_s = upstream_timeout_s
        self.limits = limits or EdgeLimits()
        self.connections: set[ClientConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls past a timeout are found by a sweep, not a timer per call: arming and
        # cancelling one cost ~10 µs of CPU per call. A timeout is acted on within a quarter
        # of the shortest one (at most a second) after it expires; a timeout of a few
        # milliseconds is still swept only every SWEEP_MIN_INTERVAL_S, not thousands of times
        # a second.
        shortest_s = min(
            upstream_timeout_s,
            self.limits.header_timeout_s,
            self.limits.body_timeout_s,
            self.limits.idle_timeout_s,
        )
        self.sweep_interval_s = max(SWEEP_MIN_INTERVAL_S, min(SWEEP_MAX_INTERVAL_S, shortest_s / 4))
        self._sweep = self.loop.call_later(self.sweep_interval_s, self._sweep_timeouts)

    def _sweep_timeouts(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            connection.sweep(now)
        self._sweep = self.loop.call_later(self.sweep_interval_s, self._sweep_timeouts)

    def count_refusal(self, cause: str) -> None:
        self.metrics.refused.labels(cause).inc()

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
