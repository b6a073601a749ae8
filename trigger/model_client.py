"""The trigger's HTTP/1.1 client for the model server: POST a body, get the status and body back.

The calls go over the producer core's pool of keep-alive connections (`logger.producer.upstream`),
the one the sidecar proxies through; this module adds the trigger's part: a whole answer per
call within a timeout, and its failures as errors.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from logger.producer.upstream import DEFAULT_IDLE_REUSE_S, Upstream, UpstreamConnection


class ModelCallError(Exception):
    """The model server gave no answer. `status` is what a proxy would answer instead."""

    status = 502


class ModelUnreachableError(ModelCallError):
    """No connection, or it broke before a whole answer arrived."""


class ModelTimeoutError(ModelCallError):
    status = 504


class _ClosedUnansweredError(ModelUnreachableError):
    """The connection closed before any byte of an answer: safe to send once more."""


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    status: int
    content_type: str | None
    body: bytes


class ModelClient:
    """POSTs to one model server (http://host[:port][/prefix]) within a timeout per call."""

    def __init__(
        self, model_url: str, timeout_s: float, idle_reuse_s: float = DEFAULT_IDLE_REUSE_S
    ) -> None:
        self._upstream = Upstream(model_url, idle_reuse_s)
        self._host_header = f"{self._upstream.host}:{self._upstream.port}".encode()
        self._timeout_s = timeout_s

    async def post(self, path: str, body: bytes, content_type: str, request_id: str) -> ModelAnswer:
        """The model server's answer, whatever its status; raises ModelCallError without one."""
        head = b"POST %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
            self._upstream.path_prefix,
            path.encode(),
            self._host_header,
            content_type.encode(),
            len(body),
        )
        if request_id.isascii() and request_id.isprintable():  # never a header injection
            head += b"X-Request-Id: %s\r\n" % request_id.encode()
        head += b"\r\n"
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._exchange(head + body)
        except TimeoutError:
            raise ModelTimeoutError(f"no answer within {self._timeout_s:g} s") from None

    async def _exchange(self, request: bytes) -> ModelAnswer:
        connection = self._upstream.take_idle()
        if connection is not None:
            try:
                return await self._send(connection, request)
            except _ClosedUnansweredError:
                pass  # closed by the server while idle: the request never reached it
        try:
            connection = await self._upstream.connect()
        except OSError as error:
            raise ModelUnreachableError(f"cannot connect to the model server: {error}") from None
        return await self._send(connection, request)

    async def _send(self, connection: UpstreamConnection, request: bytes) -> ModelAnswer:
        if connection.closed:
            raise _ClosedUnansweredError("model server closed the connection before the request")
        answer = _Answer(asyncio.get_running_loop().create_future(), self._upstream, connection)
        connection.begin(answer)
        connection.write(request)
        try:
            return await answer.future
        except BaseException:  # includes the cancellation of a timeout
            connection.abandon()
            raise

    def close(self) -> None:
        self._upstream.close()


@dataclass(slots=True)
class _Answer:
    """One call's answer, collected from its connection's callbacks into `future`."""

    future: asyncio.Future[ModelAnswer]
    upstream: Upstream
    connection: UpstreamConnection
    status: int = 0
    content_type: str | None = None
    keep_alive: bool = False
    body: list[bytes] = field(default_factory=list)

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]], keep: bool) -> None:
        self.status, self.keep_alive = status, keep
        for name, value in headers:
            if name.lower() == b"content-type":
                self.content_type = value.decode("latin-1")

    def response_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def response_complete(self) -> None:
        if self.keep_alive:
            self.upstream.release(self.connection)
        else:
            self.connection.abandon()
        if not self.future.done():
            self.future.set_result(ModelAnswer(self.status, self.content_type, b"".join(self.body)))

    def upstream_failed(self, reason: str) -> None:
        failure = ModelUnreachableError if self.connection.received else _ClosedUnansweredError
        if not self.future.done():
            self.future.set_exception(failure(reason))

    def upstream_writing_paused(self, paused: bool) -> None:
        pass  # the request is written whole at once; the transport buffers what waits
