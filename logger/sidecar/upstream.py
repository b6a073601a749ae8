"""The model server side of the proxy: where it is, and keep-alive connections to it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import httptools

from logger.settings import DEFAULT_IDLE_REUSE_S

if TYPE_CHECKING:
    from logger.sidecar.exchange import Exchange

MAX_IDLE_CONNECTIONS = 256


class Upstream:
    """The model server's address, and a pool of idle keep-alive connections to it."""

    def __init__(self, model_url: str, idle_reuse_s: float = DEFAULT_IDLE_REUSE_S) -> None:
        parts = urlsplit(model_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--model-url must be http://host[:port][/prefix], got {model_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path_prefix = parts.path.rstrip("/").encode()
        self.idle_reuse_s = idle_reuse_s
        self._idle: list[UpstreamConnection] = []

    def take_idle(self) -> UpstreamConnection | None:
        """A kept-alive connection idle for at most `idle_reuse_s`, or None."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.closed:
                continue
            if now - connection.idle_since <= self.idle_reuse_s:
                return connection
            # The pool is a stack: the ones beneath were released earlier still.
            self._idle.append(connection)
            self.close()
        return None

    async def connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(UpstreamConnection, self.host, self.port)
        return connection

    def release(self, connection: UpstreamConnection) -> None:
        connection.exchange = None
        if connection.closed or len(self._idle) >= MAX_IDLE_CONNECTIONS:
            connection.close()
        else:
            # The last chunk of a response can fill the client's buffer and pause this
            # connection's reading after the call is over; an idle connection must read again.
            connection.set_reading(paused=False)
            connection.idle_since = time.monotonic()
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
        self.idle_since = 0.0  # when it last went back to the pool
        self.writing_paused = False  # the transport's buffer is above its high-water mark
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def new_response(self) -> None:
        # llhttp parses one response after another on a kept-alive connection; a connection
        # goes back to the pool only after a complete response. Building a parser costs more
        # than the rest of this callback path, so it is not rebuilt per call.
        self._headers = []

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def set_reading(self, paused: bool) -> None:
        if self.transport is not None and not self.closed:
            (self.transport.pause_reading if paused else self.transport.resume_reading)()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            # Nobody asked: a body sent after a bodiless answer, or junk. Parsed, it would
            # become the answer to the next call on this connection.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            exchange = self.exchange
            self.close()
            if exchange is not None:
                self.exchange = None
                exchange.upstream_failed(f"invalid response from the model server: {error}")

    def eof_received(self) -> bool | None:
        self.closed = True  # not to be taken from the pool while the close is under way
        # A close-delimited body ends here.
        with contextlib.suppress(httptools.HttpParserError):
            self._parser.feed_data(b"")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is not None:
            self.exchange.upstream_failed(f"model server closed the connection: {exc or 'EOF'}")

    # Our writes of a request body outpace the model server: stop reading the client meanwhile.
    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.exchange is not None:
            self.exchange.client.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.exchange is not None:
            self.exchange.client.resume_reading()

    def discard(self, reason: str) -> None:
        """The answer cannot be forwarded: this call gets a 502, the connection is not reused."""
        exchange = self.exchange
        self.exchange = None
        self.close()
        if exchange is not None:
            exchange.upstream_failed(reason)
        raise _StopParsing(reason)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.exchange is None:
            self.discard("the model server sent an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            if status == 100:
                self._headers = []  # informational: not forwarded, the final answer follows
                return
            # 101 turns the connection into something else; other 1xx are not proxied either.
            self.discard(f"the model server answered {status}, which is not proxied")
        if self.exchange is not None:
            self.exchange.response_head(status, self._headers, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() >= 200 and self.exchange is not None:
            self.exchange.response_complete()


class _StopParsing(Exception):
    """Raised in a parser callback to stop parsing what follows on a discarded connection."""
