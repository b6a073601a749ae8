"""One exchange's flow control against the real upstream protocol, on a recording transport.

On loopback the kernel takes the megabyte an exchange holds before its upstream connection
exists, so this path is only reached on a real network; here the transport says "full" itself.
"""

from __future__ import annotations

from types import SimpleNamespace

from logger.producer.upstream import UpstreamConnection
from logger.sidecar.exchange import Exchange

HIGH_WATER_BYTES = 64 * 1024


class RecordingClient:
    def __init__(self) -> None:
        self.server = SimpleNamespace(
            upstream=SimpleNamespace(path_prefix=b""), max_payload_bytes=1024
        )
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class FillingTransport:
    """Buffers everything, and tells its protocol to pause above the high-water mark,
    as asyncio's transports do."""

    def __init__(self, protocol: UpstreamConnection) -> None:
        self.protocol = protocol
        self.buffered = 0

    def write(self, data: bytes) -> None:
        was_full = self.buffered > HIGH_WATER_BYTES
        self.buffered += len(data)
        if not was_full and self.buffered > HIGH_WATER_BYTES:
            self.protocol.pause_writing()

    def drain(self) -> None:
        self.buffered = 0
        self.protocol.resume_writing()


def _exchange_holding(client: RecordingClient, body_bytes: int) -> Exchange:
    exchange = Exchange(client)  # type: ignore[arg-type]
    exchange.method, exchange.url = "POST", b"/v1/models/m:predict"
    for _ in range(body_bytes // 65536):
        exchange.request_body(b"x" * 65536)  # no upstream yet: held, and the client paused
    return exchange


def _connection() -> tuple[UpstreamConnection, FillingTransport]:
    connection = UpstreamConnection()
    transport = FillingTransport(connection)
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport


def test_a_held_body_that_fills_the_new_connection_keeps_the_client_paused() -> None:
    client = RecordingClient()
    exchange = _exchange_holding(client, 2 * 1024 * 1024)
    assert not client.reading
    connection, transport = _connection()
    exchange._attach(connection, reused=False)
    assert transport.buffered > HIGH_WATER_BYTES
    assert not client.reading  # the rest of the upload waits in the client's socket
    transport.drain()
    assert client.reading


def test_a_held_body_the_connection_takes_lets_the_client_go_on() -> None:
    client = RecordingClient()
    exchange = _exchange_holding(client, 2 * 1024 * 1024)
    connection, transport = _connection()
    transport.write = lambda data: None  # type: ignore[method-assign]  # the kernel took it
    exchange._attach(connection, reused=False)
    assert client.reading
