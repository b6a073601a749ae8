"""HTTP/1.1 rules the proxy applies to every message: what Connection may drop, what answer
cannot be forwarded as it is framed."""

from __future__ import annotations

import pytest

from logger.sidecar import http1


def test_connection_never_names_the_framing_away() -> None:
    headers = [
        (b"Content-Length", b"5"),
        (b"Connection", b"keep-alive, Content-Length, X-Hop"),
        (b"connection", b"transfer-encoding"),
        (b"X-Hop", b"1"),
        (b"X-Kept", b"2"),
    ]
    assert http1.connection_tokens(headers) == {b"keep-alive", b"x-hop"}
    assert http1.end_to_end(headers) == [(b"Content-Length", b"5"), (b"X-Kept", b"2")]


@pytest.mark.parametrize(
    ("status", "length", "coding", "unframeable"),
    [
        (200, b"5", None, False),
        (200, None, b"chunked", False),
        (200, None, b" Chunked ", False),
        (200, None, b"gzip", True),
        (200, None, b"gzip, chunked", True),
        (200, None, b"chunked, chunked", True),
        (204, None, None, False),
        (204, b"0", None, False),
        (204, b"5", None, True),
        (204, None, b"chunked", True),
        (304, b"5", None, False),  # the length of what a 200 would have sent: no body here
        (304, None, b"chunked", True),
    ],
)
def test_answers_the_proxy_cannot_frame_are_named(
    status: int, length: bytes | None, coding: bytes | None, unframeable: bool
) -> None:
    reason = http1.unframeable_response(status, length, coding)
    assert (reason is not None) == unframeable
    assert reason is None or "model server" in reason
