"""HTTP/1.1 details the proxy needs: hop-by-hop headers, framing, status lines, error bodies."""

from __future__ import annotations

import json
from http import HTTPStatus

# RFC 9110 section 7.6.1, plus the non-standard Proxy-Connection and Keep-Alive.
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
        b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
    }
)  # fmt: skip
# A message's framing. Connection may name them, but dropping them would leave a body with no
# length on a kept-alive connection, which the next hop reads as the next message.
FRAMING = frozenset({b"content-length", b"transfer-encoding"})
STATUS_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
LAST_CHUNK = b"0\r\n\r\n"


class Refusal(Exception):
    """A request the proxy answers itself, with `status`, and does not forward; `cause` names
    the limit or rule for the metrics."""

    def __init__(self, status: int, reason: str, cause: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.cause = cause


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in Connection: hop-by-hop for this message only (never framing)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return tokens - FRAMING


def only_chunked(coding: bytes) -> bool:
    """Whether a Transfer-Encoding value is `chunked` alone, the only coding the proxy frames."""
    return coding.strip().lower() == b"chunked"


def unframeable_response(status: int, length: bytes | None, coding: bytes | None) -> str | None:
    """Why a response head cannot be forwarded as it is framed, or None.

    A body the proxy cannot frame for the client, or one a 204 or 304 must not have, would
    stay on the kept-alive connection and be read as the answer to the next call."""
    if coding is not None and not only_chunked(coding):
        return f"the model server used the transfer coding {coding.decode('latin-1')!r}"
    if status == 204 and (coding is not None or (length is not None and length.strip() != b"0")):
        return "the model server sent a body with a 204"
    if status == 304 and coding is not None:
        return "the model server sent a body with a 304"
    return None


def end_to_end(
    headers: list[tuple[bytes, bytes]], dropped: frozenset[bytes] = HOP_BY_HOP
) -> list[tuple[bytes, bytes]]:
    """The headers a proxy forwards: without those in `dropped` (HOP_BY_HOP or more) and
    those named in Connection."""
    lowered = [name.lower() for name, _ in headers]
    if b"connection" in lowered:
        dropped = dropped | connection_tokens(headers)
    return [header for header, name in zip(headers, lowered, strict=True) if name not in dropped]


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s" % (status, STATUS_REASONS.get(status, b""))


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def error_response(status: int, reason: str, request_id: str, keep_alive: bool) -> bytes:
    """A complete JSON error answer, `{"error": reason}`, the shape KServe's servers use."""
    body = b'{"error": %s}' % json.dumps(reason).encode()
    head = [
        status_line(status),
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
    ]
    if request_id:
        head.append(b"X-Request-Id: " + request_id.encode())
    if not keep_alive:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + body
