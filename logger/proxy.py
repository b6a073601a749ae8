"""The sidecar's reverse proxy: HTTP/1.1 on asyncio protocols with httptools (llhttp).

Chosen by measurement (BENCHMARKS.md): a general-purpose framework spent ~110 µs of CPU per
proxied call before any logging; protocol callbacks with llhttp spend a fraction of that.
Bodies stream both ways with flow control; only the first `max_payload_bytes` of each are
kept for the events. Logging never delays the response: events are built after the last
byte is written and handed to the non-blocking sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import cast
from urllib.parse import urlsplit

import httptools

from logger.capture import CallRecord, EventBuilder
from logger.metrics import ProxyMetrics
from logger.sink import EventSink

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
        b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    }
)  # fmt: skip
# Above this much request body waiting for an upstream connection, stop reading the client.
REQUEST_BUFFER_HIGH_BYTES = 1024 * 1024
# nginx's status for "client closed the connection before the response was complete".
CLIENT_CLOSED_STATUS = 499
MAX_IDLE_UPSTREAM_CONNECTIONS = 256
STATUS_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class Upstream:
    """Where the model server is, and a pool of idle keep-alive connections to it."""

    def __init__(self, model_url: str) -> None:
        parts = urlsplit(model_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--model-url must be http://host[:port][/prefix], got {model_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path_prefix = parts.path.rstrip("/").encode()
        self.host_header = parts.netloc.encode()
        self._idle: list[UpstreamConnection] = []

    async def acquire(self) -> tuple[UpstreamConnection, bool]:
        """An open connection, and whether it was reused (a reused one may have gone stale)."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection, True
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(UpstreamConnection, self.host, self.port)
        return connection, False

    def release(self, connection: UpstreamConnection) -> None:
        if connection.closed or len(self._idle) >= MAX_IDLE_UPSTREAM_CONNECTIONS:
            connection.close()
        else:
            connection.exchange = None
            self._idle.append(connection)

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class UpstreamConnection(asyncio.Protocol):
    """One connection to the model server; parses responses and hands them to its exchange."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def new_response(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.closed = True
            if self.exchange is not None:
                self.exchange.upstream_failed(f"invalid response from the model server: {error}")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is not None:
            self.exchange.upstream_failed(f"model server closed the connection: {exc or 'EOF'}")

    def eof_received(self) -> bool | None:
        # A close-delimited body ends here.
        with contextlib.suppress(httptools.HttpParserError):
            self._parser.feed_data(b"")
        return None

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.resume_reading()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._headers = []  # informational: not forwarded, the final answer follows
            return
        if self.exchange is not None:
            self.exchange.response_head(status, self._headers, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() >= 200 and self.exchange is not None:
            self.exchange.response_complete()


class Exchange:
    """One proxied call: request in, request upstream, response back, two events out."""

    def __init__(self, client: ClientConnection, received_at: datetime) -> None:
        self.client = client
        self.started = time.perf_counter()
        self.received_at = received_at
        self.method = ""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.request_id = ""
        self.request_id_generated = False
        self.client_keep_alive = True
        self.client_http_11 = True
        self.request_chunked = False
        self.request_complete = False
        self.logged = True
        self._pending_body: list[bytes] = []
        self._pending_bytes = 0
        self._request_capture = bytearray()
        self._request_truncated = False
        self._upstream: UpstreamConnection | None = None
        self._upstream_reused = False
        self._response_started = False
        self._response_chunked = False
        self._response_no_body = False
        self._response_status = 0
        self._response_content_type: str | None = None
        self._response_capture = bytearray()
        self._response_truncated = False
        self._upstream_keep_alive = False
        self._done = asyncio.get_running_loop().create_future()
        self._timeout: asyncio.TimerHandle | None = None
        self._deferred_error: tuple[int, str] | None = None
        self.finished = False

    # --- request side (called by ClientConnection) ---
    def headers_complete(self, parser: httptools.HttpRequestParser) -> None:
        self.method = parser.get_method().decode("latin-1")
        self.client_keep_alive = parser.should_keep_alive()
        self.client_http_11 = parser.get_http_version() == "1.1"
        ce_id = ""
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"x-request-id" and value:
                self.request_id = value.decode("latin-1")
            elif lowered == b"ce-id" and value:
                ce_id = value.decode("latin-1")
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                self.request_chunked = True
        if not self.request_id:
            self.request_id = ce_id or str(uuid.uuid4())
            self.request_id_generated = not ce_id
        self.logged = self.client.server.builder.sampled()

    def request_body(self, chunk: bytes) -> None:
        self._capture(self._request_capture, chunk, request=True)
        if self.finished or self._deferred_error:
            return  # answered, or to be answered with an error: the rest is only read
        if self._upstream is not None and not self._upstream.closed:
            self._upstream.write(self._frame_request(chunk))
            return
        self._pending_body.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes > REQUEST_BUFFER_HIGH_BYTES:
            self.client.pause_reading()

    def request_done(self) -> None:
        self.request_complete = True
        if self._upstream is not None and self.request_chunked:
            self._upstream.write(b"0\r\n\r\n")
        server = self.client.server
        if self.logged and server.builder.logs_requests:
            server.sink.send(server.builder.request_event(self._call_record()))
        if self._deferred_error is not None:
            self._answer_error(*self._deferred_error)

    def _capture(self, buffer: bytearray, chunk: bytes, request: bool) -> None:
        limit = self.client.server.max_payload_bytes
        if limit and len(buffer) + len(chunk) > limit:
            buffer += chunk[: max(0, limit - len(buffer))]
            if request:
                self._request_truncated = True
            else:
                self._response_truncated = True
        else:
            buffer += chunk

    def _frame_request(self, chunk: bytes) -> bytes:
        if self.request_chunked:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunk else b""
        return chunk

    # --- running the call ---
    async def run(self) -> None:
        server = self.client.server
        self._timeout = asyncio.get_running_loop().call_later(
            server.upstream_timeout_s, self._timed_out
        )
        try:
            await self._send_upstream()
            await self._done
        except OSError as error:
            self._answer_error(502, f"model server unreachable: {error}")
        finally:
            self._timeout.cancel()

    async def _send_upstream(self) -> None:
        upstream_target = self.client.server.upstream
        self._upstream, self._upstream_reused = await upstream_target.acquire()
        self._upstream.exchange = self
        self._upstream.new_response()
        head = self._request_head(upstream_target.path_prefix)
        body = b"".join(self._frame_request(chunk) for chunk in self._pending_body)
        self._pending_body.clear()
        self._pending_bytes = 0
        self._upstream.write(head + body + (b"0\r\n\r\n" if self._end_chunked_now() else b""))
        self.client.resume_reading()

    def _end_chunked_now(self) -> bool:
        return self.request_complete and self.request_chunked

    def _request_head(self, prefix: bytes) -> bytes:
        connection_tokens = _connection_tokens(self.headers)
        lines = [b"%s %s%s HTTP/1.1" % (self.method.encode(), prefix, self.url)]
        for name, value in self.headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP or lowered in connection_tokens or lowered == b"expect":
                continue
            lines.append(name + b": " + value)
        if self.request_chunked:
            lines.append(b"Transfer-Encoding: chunked")
        if self.request_id_generated:
            lines.append(b"X-Request-Id: " + self.request_id.encode())
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def upstream_failed(self, reason: str) -> None:
        if self.finished:
            return
        if not self._response_started and self._can_retry():
            self._upstream_reused = False  # one retry, on a fresh connection
            task = asyncio.get_running_loop().create_task(self._retry())
            self.client.server.background.add(task)
            task.add_done_callback(self.client.server.background.discard)
            return
        if self._response_started:
            # Part of the answer is already with the client: all we can do is cut it short.
            self._finish(self._response_status, close_client=True)
        else:
            self._answer_error(502, reason)

    def _can_retry(self) -> bool:
        # A kept-alive connection the model server closed while idle: the request never reached
        # it, and we still hold the whole body, so sending it again is safe.
        return self._upstream_reused and self.request_complete and not self._request_truncated

    async def _retry(self) -> None:
        self._pending_body = [bytes(self._request_capture)] if self._request_capture else []
        try:
            await self._send_upstream()
        except OSError as error:
            self._answer_error(502, f"model server unreachable: {error}")

    def _timed_out(self) -> None:
        if self._upstream is not None:
            self._upstream.exchange = None
            self._upstream.close()
        if self._response_started:
            self._finish(self._response_status, close_client=True)
        else:
            self._answer_error(504, "model server did not answer in time")

    # --- response side (called by UpstreamConnection) ---
    def response_head(self, status: int, headers: list[tuple[bytes, bytes]], keep: bool) -> None:
        self._response_started = True
        self._response_status = status
        self._upstream_keep_alive = keep
        connection_tokens = _connection_tokens(headers)
        has_length = False
        has_request_id = False
        lines = [b"HTTP/1.1 %d %s" % (status, _reason(status))]
        for name, value in headers:
            lowered = name.lower()
            if lowered in HOP_BY_HOP or lowered in connection_tokens:
                continue
            if lowered == b"content-length":
                has_length = True
            elif lowered == b"content-type":
                self._response_content_type = value.decode("latin-1")
            elif lowered == b"x-request-id":
                has_request_id = True
            lines.append(name + b": " + value)
        if not has_request_id:
            lines.append(b"X-Request-Id: " + self.request_id.encode())
        self._response_no_body = self.method == "HEAD" or status in (204, 304)
        if not has_length and not self._response_no_body:
            if self.client_http_11:
                self._response_chunked = True
                lines.append(b"Transfer-Encoding: chunked")
            else:
                self.client_keep_alive = False  # HTTP/1.0: the body ends when we close
        if not self.client_keep_alive:
            lines.append(b"Connection: close")
        elif not self.client_http_11:
            lines.append(b"Connection: keep-alive")
        self.client.write(b"\r\n".join(lines) + b"\r\n\r\n")
        if self.method == "HEAD":
            # llhttp would wait for the body a HEAD answer never has; this connection is done.
            self._upstream_keep_alive = False
            self.response_complete()

    def response_body(self, chunk: bytes) -> None:
        self._capture(self._response_capture, chunk, request=False)
        if self._response_chunked:
            self.client.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            self.client.write(chunk)

    def response_complete(self) -> None:
        if self._response_chunked:
            self.client.write(b"0\r\n\r\n")
        upstream = self._upstream
        if upstream is not None:
            upstream.exchange = None
            if self._upstream_keep_alive and self.request_complete:
                self.client.server.upstream.release(upstream)
            else:
                upstream.close()
        self._finish(self._response_status, close_client=not self.client_keep_alive)

    def client_lost(self) -> None:
        if self.finished:
            return
        if self._upstream is not None:
            self._upstream.exchange = None
            self._upstream.close()
        self._finish(CLIENT_CLOSED_STATUS, close_client=True)

    def _answer_error(self, status: int, reason: str) -> None:
        if self.finished:
            return
        if self._upstream is not None:
            self._upstream.exchange = None
            self._upstream.close()
        if not self.request_complete:
            # Read the rest of the request first, so that its event is complete and the
            # connection stays usable; the client is sending it anyway.
            self._deferred_error = (status, reason)
            self._pending_body.clear()
            self._pending_bytes = 0
            self.client.resume_reading()
            return
        self.client.server.metrics.upstream_errors.inc()
        log.warning("%s %s -> %d: %s", self.method, self.url.decode("latin-1"), status, reason)
        body = b'{"error": %s}' % _json_string(reason)
        self._response_content_type = "application/json"
        self._response_capture = bytearray(body)
        head = (
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"X-Request-Id: %s\r\n" % (status, _reason(status), len(body), self.request_id.encode())
        )
        head += b"\r\n" if self.client_keep_alive else b"Connection: close\r\n\r\n"
        self.client.write(head + body)
        self._finish(status, close_client=not self.client_keep_alive)

    def _finish(self, status: int, close_client: bool) -> None:
        if self.finished:
            return
        self.finished = True
        self._response_status = status
        if not self._done.done():
            self._done.set_result(None)
        server = self.client.server
        elapsed_s = time.perf_counter() - self.started
        server.metrics.latency.observe(elapsed_s)
        server.metrics.requests.labels(str(status)).inc()
        if self.logged:
            if server.builder.logs_responses:
                record = self._call_record()
                record.status_code = status
                record.response_content_type = self._response_content_type
                record.response_body = bytes(self._response_capture)
                record.response_truncated = self._response_truncated
                record.completed_at = datetime.now(UTC)
                record.latency_ms = elapsed_s * 1000
                server.sink.send(server.builder.response_event(record))
            if self._request_truncated or self._response_truncated:
                server.metrics.truncated.inc()
        else:
            server.metrics.sampled_out.inc()
        self.client.exchange_finished(self, close_client)

    def _call_record(self) -> CallRecord:
        content_type = next(
            (v.decode("latin-1") for n, v in self.headers if n.lower() == b"content-type"), None
        )
        return CallRecord(
            request_id=self.request_id,
            method=self.method,
            path=self.url.decode("latin-1"),
            request_headers=self.headers,
            request_content_type=content_type,
            request_body=bytes(self._request_capture),
            request_truncated=self._request_truncated,
            received_at=self.received_at,
        )


class ClientConnection(asyncio.Protocol):
    """One client connection; calls on it are answered one at a time, in order."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._current: Exchange | None = None
        self._queue: deque[Exchange] = deque()
        self._active: Exchange | None = None
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
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(501, b"protocol upgrades are not proxied")
        except httptools.HttpParserError as error:
            self._reject(400, str(error).encode())

    def _reject(self, status: int, reason: bytes) -> None:
        body = b'{"error": %s}' % _json_string(reason.decode("latin-1"))
        self.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, _reason(status), len(body), body)
        )
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

    # Flow control of our writes to the client: stop reading the model server meanwhile.
    def pause_writing(self) -> None:
        self._set_upstream_reading(paused=True)

    def resume_writing(self) -> None:
        self._set_upstream_reading(paused=False)

    def _set_upstream_reading(self, paused: bool) -> None:
        active = self._active
        upstream = active._upstream if active is not None else None
        if upstream is not None and upstream.transport is not None and not upstream.closed:
            (upstream.transport.pause_reading if paused else upstream.transport.resume_reading)()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._current = Exchange(self, datetime.now(UTC))

    def on_url(self, url: bytes) -> None:
        assert self._current is not None
        self._current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._current is not None
        self._current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self._current
        assert exchange is not None
        exchange.headers_complete(self._parser)
        if self._active is None:
            self._start(exchange)
        else:
            self._queue.append(exchange)

    def on_body(self, body: bytes) -> None:
        assert self._current is not None
        self._current.request_body(body)

    def on_message_complete(self) -> None:
        assert self._current is not None
        self._current.request_done()
        self._current = None

    def _start(self, exchange: Exchange) -> None:
        self._active = exchange
        headers = exchange.headers
        if any(n.lower() == b"expect" and v.lower() == b"100-continue" for n, v in headers):
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        task = asyncio.get_running_loop().create_task(exchange.run())
        self.server.background.add(task)
        task.add_done_callback(self.server.background.discard)

    def exchange_finished(self, exchange: Exchange, close_client: bool) -> None:
        if exchange is not self._active:
            return
        self._active = None
        if close_client:
            self.close()
        elif self._queue:
            self._start(self._queue.popleft())


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
        self.upstream = upstream
        self.builder = builder
        self.sink = sink
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.upstream_timeout_s = upstream_timeout_s
        self.connections: set[ClientConnection] = set()
        self.background: set[asyncio.Task[None]] = set()

    def protocol_factory(self) -> Callable[[], ClientConnection]:
        return lambda: ClientConnection(self)

    async def drain(self, timeout_s: float) -> None:
        """Let calls in progress finish (stop accepting first), then close idle connections."""
        deadline = time.monotonic() + timeout_s
        while self.background and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.close()
        self.upstream.close()


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return tokens


def _reason(status: int) -> bytes:
    return STATUS_REASONS.get(status, b"")


def _json_string(text: str) -> bytes:
    return json.dumps(text).encode()
