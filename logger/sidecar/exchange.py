"""One proxied call: request in, request upstream, response back, two events out.

Callback-driven: a call on a kept-alive upstream connection runs without a task or a future,
because each extra event-loop turn costs tens of microseconds of CPU on a small VM.
"""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httptools

from infermon.events import KafkaRecord
from logger.producer.capture import CallRecord
from logger.producer.upstream import UpstreamConnection
from logger.sidecar import http1

if TYPE_CHECKING:
    from logger.sidecar.proxy import ClientConnection

log = logging.getLogger(__name__)

# Above this much request body waiting for an upstream connection, stop reading the client.
REQUEST_BUFFER_HIGH_BYTES = 1024 * 1024
# nginx's status for "client closed the connection before the response was complete".
CLIENT_CLOSED_STATUS = 499
DROP_UPSTREAM = http1.HOP_BY_HOP | {b"expect"}  # we answered 100-continue ourselves
# Random bytes for request ids are read from the OS this many ids at a time: one getrandom
# call per id cost more than the rest of making it.
REQUEST_ID_BATCH = 256
_random_ids = bytearray()


def _forget_random_ids() -> None:
    """A forked child must not hand out the ids its parent still holds."""
    _random_ids.clear()


os.register_at_fork(after_in_child=_forget_random_ids)


def new_request_id() -> str:
    """A random (version 4) UUID, as text, from the OS's cryptographic random source."""
    global _random_ids
    if not _random_ids:
        _random_ids = bytearray(os.urandom(16 * REQUEST_ID_BATCH))
    raw = _random_ids[-16:]
    del _random_ids[-16:]
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class Exchange:
    def __init__(self, client: ClientConnection) -> None:
        self.client = client
        self.server = client.server
        self.started = time.perf_counter()
        self.received_at = datetime.now(UTC)
        self.method = ""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.request_id = ""
        self.request_id_generated = False
        self.client_keep_alive = True
        self.client_http_11 = True
        self.request_chunked = False
        self.request_content_type: str | None = None
        self.expects_continue = False
        self.request_complete = False
        self.logged = True
        self._started = False  # its turn came: it is (being) sent upstream
        self.finished = False
        self._pending_body: list[bytes] = []
        self._pending_bytes = 0
        self._request_capture = bytearray()
        self._request_truncated = False
        self._upstream: UpstreamConnection | None = None
        self._upstream_keep_alive = False
        self._response_started = False
        self._response_chunked = False
        self._response_status = 0
        self._response_content_type: str | None = None
        self._response_capture = bytearray()
        self._response_truncated = False
        self.deadline = math.inf  # loop time past which the model server is given up on
        self._deferred_error: tuple[int, str] | None = None
        self._record: CallRecord | None = None  # built for the events, off the call's path
        self._status = 0
        self._completed_at: datetime | None = None
        self._elapsed_s = 0.0

    # --- the request, as the client sends it ---
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
            elif lowered == b"content-type" and self.request_content_type is None:
                self.request_content_type = value.decode("latin-1")
            elif lowered == b"transfer-encoding":
                self._check_transfer_coding(value)
            elif lowered == b"expect" and value.lower() == b"100-continue":
                self.expects_continue = True
        if not self.request_id:
            self.request_id = ce_id or new_request_id()
            self.request_id_generated = not ce_id
        self.logged = self.server.builder.sampled()

    def head_size(self) -> int:
        """About the bytes of the request line and header fields (without optional spaces)."""
        fields = sum(len(name) + len(value) + 4 for name, value in self.headers)  # ": ", CRLF
        return len(self.url) + len(b"GET  HTTP/1.1\r\n\r\n") + fields

    def _check_transfer_coding(self, coding: bytes) -> None:
        # llhttp has refused it beside a Content-Length, twice, or without chunked last.
        if not self.client_http_11:
            # RFC 9112 section 6.1: in HTTP/1.0 its framing is faulty, whatever it says.
            raise http1.Refusal(400, "Transfer-Encoding in an HTTP/1.0 request", "malformed")
        if not http1.only_chunked(coding):
            raise http1.Refusal(
                501, f"transfer coding {coding.decode('latin-1')!r} is not supported",
                "transfer_coding",
            )  # fmt: skip
        self.request_chunked = True
        self.client.expect_trailers()

    def request_body(self, chunk: bytes) -> None:
        self._capture(chunk, response=False)
        if self.finished or self._deferred_error:
            return  # answered, or to be answered with an error: the rest is only read
        if self._upstream is not None:
            self._upstream.write(self._frame(chunk))
            return
        self._pending_body.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes > REQUEST_BUFFER_HIGH_BYTES:
            self.client.pause_reading()

    def request_done(self) -> None:
        self.request_complete = True
        if self._upstream is not None and self.request_chunked and not self.finished:
            self._upstream.write(http1.LAST_CHUNK)
        if self._started:  # else it is logged when its turn comes, if it comes
            self._log_request()
        if self._deferred_error is not None:
            self._answer_error(*self._deferred_error)

    def _log_request(self) -> None:
        if self.logged and self.server.builder.logs_requests:
            self.server.sink.defer(self._request_event, len(self._request_capture))

    def request_failed(self, status: int, reason: str) -> None:
        """The request went bad after it started (a malformed chunk, a body too slow): the
        model server gets no more of it, and the client an error unless an answer began."""
        if self.finished:
            return
        self._drop_upstream()
        self._deferred_error = None
        self.client_keep_alive = False
        self.request_complete = True
        self._log_request()
        if self._response_started:
            self._finish(self._response_status, close_client=True)
        else:
            self._answer_now(status, reason)

    def _capture(self, chunk: bytes, response: bool) -> None:
        buffer = self._response_capture if response else self._request_capture
        limit = self.server.max_payload_bytes
        if limit and len(buffer) + len(chunk) > limit:
            buffer += chunk[: max(0, limit - len(buffer))]
            if response:
                self._response_truncated = True
            else:
                self._request_truncated = True
        else:
            buffer += chunk

    def _frame(self, chunk: bytes) -> bytes:
        return http1.chunk(chunk) if self.request_chunked else chunk

    @property
    def upstream(self) -> UpstreamConnection | None:
        return self._upstream

    # --- sending it upstream ---
    def start(self) -> None:
        if not self._started:
            self._started = True
            if self.request_complete:  # read in full while the call before it was answered
                self._log_request()
            self.deadline = self.server.loop.time() + self.server.upstream_timeout_s
        connection = self.server.upstream.take_idle()
        if connection is None:
            self.server.spawn(self._connect())
        else:
            self._attach(connection, reused=True)

    async def _connect(self) -> None:
        try:
            connection = await self.server.upstream.connect()
        except OSError as error:
            self._answer_error(502, f"model server unreachable: {error}")
            return
        if self.finished or self._deferred_error:
            self.server.upstream.release(connection)
        else:
            self._attach(connection, reused=False)

    def _attach(self, connection: UpstreamConnection, reused: bool) -> None:
        if connection.closed:  # found closed before a byte was written: the server saw nothing
            if reused:
                self.start()  # so it may go on another connection
            else:
                self._answer_error(502, "model server closed the connection before the request")
            return
        self._upstream = connection
        connection.begin(self)
        parts = [self._request_head(), *(self._frame(c) for c in self._pending_body)]
        if self.request_complete and self.request_chunked:
            parts.append(http1.LAST_CHUNK)
        connection.write(b"".join(parts))
        self._pending_body.clear()
        self._pending_bytes = 0
        if not connection.writing_paused:  # else its resume_writing lets the client go on
            self.client.resume_reading()

    def _request_head(self) -> bytes:
        prefix = self.server.upstream.path_prefix
        lines = [b"%s %s%s HTTP/1.1" % (self.method.encode(), prefix, self.url)]
        lines += [name + b": " + value for name, value in
                  http1.end_to_end(self.headers, DROP_UPSTREAM)]  # fmt: skip
        if self.request_chunked:
            lines.append(b"Transfer-Encoding: chunked")
        if self.request_id_generated:
            lines.append(b"X-Request-Id: " + self.request_id.encode())
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def upstream_failed(self, reason: str) -> None:
        # Never sent again: once a byte of the request is written, the model server may have
        # run it, and running a POST twice is worse than a 502. (A pooled connection already
        # known to be closed is never taken, so nothing is lost that was not sent.)
        if self.finished:
            return
        if self._response_started:
            # Part of the answer is already with the client: all we can do is cut it short.
            self._finish(self._response_status, close_client=True)
        else:
            self._answer_error(502, reason)

    def timed_out(self) -> None:
        """Past the deadline: called by the proxy's periodic sweep."""
        self._drop_upstream()
        if self._response_started:
            self._finish(self._response_status, close_client=True)
        else:
            self._answer_error(504, "model server did not answer in time")

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.abandon()

    def upstream_writing_paused(self, paused: bool) -> None:
        # Our writes of the request body outpace the model server: stop reading the client.
        if paused:
            self.client.pause_reading()
        else:
            self.client.resume_reading()

    # --- the response, as the model server sends it ---
    def response_head(self, status: int, headers: list[tuple[bytes, bytes]], keep: bool) -> None:
        lowered_names = [name.lower() for name, _ in headers]
        dropped = http1.HOP_BY_HOP
        if b"connection" in lowered_names:
            dropped = dropped | http1.connection_tokens(headers)
        lines = [http1.status_line(status)]
        length = coding = None
        has_request_id = False
        for (name, value), lowered in zip(headers, lowered_names, strict=True):
            if lowered in dropped:
                if lowered == b"transfer-encoding":
                    coding = value if coding is None else coding + b", " + value
                continue
            if lowered == b"content-length":
                length = value
            elif lowered == b"content-type":
                self._response_content_type = value.decode("latin-1")
            elif lowered == b"x-request-id":
                has_request_id = True
            lines.append(name + b": " + value)
        no_body = self.method == "HEAD" or status == 204 or status == 304
        if coding is not None or no_body:
            unframeable = http1.unframeable_response(status, length, coding)
            if unframeable is not None and self._upstream is not None:
                self._upstream.discard(unframeable)
            # A body sent anyway after a bodiless answer must not meet the next call.
            keep = False
        self._response_started = True
        self._response_status = status
        self._upstream_keep_alive = keep
        if not has_request_id:
            lines.append(b"X-Request-Id: " + self.request_id.encode())
        if length is None and not no_body:
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
            self.response_complete()

    def response_body(self, chunk: bytes) -> None:
        self._capture(chunk, response=True)
        self.client.write(http1.chunk(chunk) if self._response_chunked else chunk)

    def response_complete(self) -> None:
        if self._response_chunked:
            self.client.write(http1.LAST_CHUNK)
        upstream = self._upstream
        if upstream is not None:
            if self._upstream_keep_alive and self.request_complete:
                self.server.upstream.release(upstream)
            else:
                upstream.abandon()
        self._finish(self._response_status, close_client=not self.client_keep_alive)

    def client_lost(self) -> None:
        if not self.finished:
            self._drop_upstream()
            self._finish(CLIENT_CLOSED_STATUS, close_client=True)

    def _answer_error(self, status: int, reason: str) -> None:
        if self.finished:
            return
        self._drop_upstream()
        if not self.request_complete:
            # Read the rest of the request first, so that its event is complete and the
            # connection stays usable; the client is sending it anyway.
            self._deferred_error = (status, reason)
            self._pending_body.clear()
            self._pending_bytes = 0
            self.client.resume_reading()
            return
        self.server.metrics.upstream_errors.inc()
        log.warning("%s %s -> %d: %s", self.method, self.url.decode("latin-1"), status, reason)
        self._answer_now(status, reason)

    def _answer_now(self, status: int, reason: str) -> None:
        answer = http1.error_response(status, reason, self.request_id, self.client_keep_alive)
        self._response_content_type = "application/json"
        self._response_capture = bytearray(answer.split(b"\r\n\r\n", 1)[1])
        self.client.write(answer)
        self._finish(status, close_client=not self.client_keep_alive)

    # --- the end: metrics, the response event, the next call on this connection ---
    def _finish(self, status: int, close_client: bool) -> None:
        if self.finished:
            return
        self.finished = True
        elapsed_s = time.perf_counter() - self.started
        metrics = self.server.metrics
        metrics.latency.observe(elapsed_s)
        metrics.requests.inc(status)
        if not self.logged:
            metrics.sampled_out.inc()
        elif self.server.builder.logs_responses:
            self._status = status
            self._completed_at = datetime.now(UTC)
            self._elapsed_s = elapsed_s
            self.server.sink.defer(self._response_event, len(self._response_capture))
        if self._request_truncated or self._response_truncated:
            metrics.truncated.inc()
        self.client.exchange_finished(self, close_client)

    # --- the events, built by the sink after the call, from what no longer changes ---
    def _request_event(self) -> KafkaRecord:
        return self.server.builder.request_event(self._call_record())

    def _response_event(self) -> KafkaRecord:
        record = self._call_record()
        record.status_code = self._status
        record.response_content_type = self._response_content_type
        record.response_body = bytes(self._response_capture)
        record.response_truncated = self._response_truncated
        record.completed_at = self._completed_at
        record.latency_ms = self._elapsed_s * 1000
        return self.server.builder.response_event(record)

    def _call_record(self) -> CallRecord:
        if self._record is not None:
            return self._record
        self._record = CallRecord(
            request_id=self.request_id,
            method=self.method,
            path=self.url.decode("latin-1"),
            request_headers=self.headers,
            request_content_type=self.request_content_type,
            request_body=bytes(self._request_capture),
            request_truncated=self._request_truncated,
            received_at=self.received_at,
        )
        return self._record
