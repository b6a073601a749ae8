"""Keep-alive HTTP/1.1 connections to the model server, for the sidecar and the trigger.

`Upstream` is the model server's address and a pool of idle connections to it.
`UpstreamConnection` parses the answers (httptools) and hands each part to the `Receiver` of
the call in progress: the sidecar's exchange, forwarding it to its client as it comes, or the
trigger's collected answer. Callback-driven, with no task or future of its own, because each
extra event-loop turn costs tens of microseconds of CPU on a small VM; posting to KServe's
server 16 at a time, the trigger spent ~30 µs of CPU a call on this path and httpx's
AsyncClient ~1.4 ms.

Whether a call may be sent again when its connection breaks is the caller's choice: the
connection says whether any byte of an answer had arrived (`received`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

# A pooled model-server connection idle longer than this is not reused. A request written on a
# connection the server is closing at that moment cannot be sent again (the server may have run
# it), so connections retire before servers commonly close them: uvicorn, which KServe's Python
# server runs on, closes a kept-alive connection after 5 s idle.
DEFAULT_IDLE_REUSE_S = 4.0
# Idle connections kept; more are closed when they come back.
MAX_IDLE_CONNECTIONS = 256


class Receiver(Protocol):
    """The call a connection carries: told of its answer part by part, or of its failure."""

    def response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None: ...

    def response_body(self, chunk: bytes) -> None: ...

    def response_complete(self) -> None: ...

    def upstream_failed(self, reason: str) -> None:
        """No whole answer will come; the connection is closed (or closing)."""

    def upstream_writing_paused(self, paused: bool) -> None:
        """The connection's send buffer went above (True) or back below its high-water mark."""


class Upstream:
    """The model server's address (http://host[:port][/prefix]) and its idle connections."""

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
        """A new connection; raises OSError when the model server cannot be reached."""
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(UpstreamConnection, self.host, self.port)
        return connection

    def release(self, connection: UpstreamConnection) -> None:
        """Back to the pool after a complete answer (closed if the pool is full)."""
        connection.receiver = None
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
    """One connection to the model server; parses answers and hands them to its receiver."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.receiver: Receiver | None = None
        self.closed = False
        self.received = False  # a byte of the answer to the current call has arrived
        self.idle_since = 0.0  # when it last went back to the pool
        self.writing_paused = False  # the transport's buffer is above its high-water mark
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def begin(self, receiver: Receiver) -> None:
        """`receiver`'s call goes on this connection; its request is written next."""
        # llhttp parses one response after another on a kept-alive connection; a connection
        # goes back to the pool only after a complete response. Building a parser costs more
        # than the rest of this callback path, so it is not rebuilt per call.
        self.receiver = receiver
        self.received = False
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

    def abandon(self) -> None:
        """Closed without telling the receiver: its call is over, or given up on."""
        self.receiver = None
        self.close()

    def data_received(self, data: bytes) -> None:
        if self.receiver is None:
            # Nobody asked: a body sent after a bodiless answer, or junk. Parsed, it would
            # become the answer to the next call on this connection.
            self.close()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            receiver = self.receiver
            self.abandon()
            if receiver is not None:
                receiver.upstream_failed(f"invalid response from the model server: {error}")

    def eof_received(self) -> bool | None:
        self.closed = True  # not to be taken from the pool while the close is under way
        # A close-delimited body ends here.
        with contextlib.suppress(httptools.HttpParserError):
            self._parser.feed_data(b"")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.upstream_failed(f"model server closed the connection: {exc or 'EOF'}")

    # Our writes of a request body outpace the model server: the receiver holds back meanwhile.
    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.receiver is not None:
            self.receiver.upstream_writing_paused(True)

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.receiver is not None:
            self.receiver.upstream_writing_paused(False)

    def discard(self, reason: str) -> None:
        """The answer cannot be used: the call fails with `reason`, the connection is not
        reused. Stops the parser, when called from one of its callbacks."""
        receiver = self.receiver
        self.abandon()
        if receiver is not None:
            receiver.upstream_failed(reason)
        raise _StopParsing(reason)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.receiver is None:
            self.discard("the model server sent an answer nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            if status == 100:
                self._headers = []  # informational: not passed on, the final answer follows
                return
            # 101 turns the connection into something else; other 1xx are not expected either.
            self.discard(f"the model server answered {status}, which is not supported")
        if self.receiver is not None:
            self.receiver.response_head(status, self._headers, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if self.receiver is not None:
            self.receiver.response_body(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() >= 200 and self.receiver is not None:
            self.receiver.response_complete()


class _StopParsing(Exception):
    """Raised in a parser callback to stop parsing what follows on a discarded connection."""
