"""HTTP/1.1 details the proxy needs: hop-by-hop headers, status lines, error bodies."""

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
STATUS_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
LAST_CHUNK = b"0\r\n\r\n"


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in Connection: hop-by-hop for this message only."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return tokens


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
