"""What any proxy of the logger's design costs, beside the logger: CPU per call at a fixed rate.

Two floors run in front of the same KServe model server as the logger, with the same load:
`relay` forwards bytes both ways on uvloop protocols (no HTTP at all); `parse` also parses
both directions with httptools, with a Python callback per header, as the logger does. What
the logger costs above `parse` is its own per-call work: the exchange's state, header
rewriting, metrics, and the events.

    python bench/logger_floor.py [--rate 500] [--duration-s 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys

import httptools
import uvloop
from common import cpu_seconds, hey_fixed_rate, require_tools, start_logger

from tests.fixtures.broker import TansuBroker
from tests.fixtures.kserve_server import KServeModelServer
from tests.fixtures.processes import ServerProcess, free_port, port_open

FLOORS = ("relay", "parse")


class UpstreamSide(asyncio.Protocol):
    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self) if client.parses else None
        self.headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client.upstream_ready(self)

    def data_received(self, data: bytes) -> None:
        self.client.write(data)
        if self.parser is not None:
            self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.headers = []


class ClientSide(asyncio.Protocol):
    parses = False  # set once per floor process, before it serves
    upstream_address = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.upstream: UpstreamSide | None = None
        self.waiting: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.parser = httptools.HttpRequestParser(self) if self.parses else None
        loop = asyncio.get_running_loop()
        # Kept so the task is not collected mid-connect; one connection per client, unpooled.
        self.connecting = loop.create_task(
            loop.create_connection(lambda: UpstreamSide(self), *self.upstream_address)
        )

    def upstream_ready(self, upstream: UpstreamSide) -> None:
        self.upstream = upstream
        for data in self.waiting:
            upstream.transport.write(data)  # type: ignore[union-attr]

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.parser is not None:
            self.parser.feed_data(data)
        if self.upstream is None:
            self.waiting.append(data)
        else:
            self.upstream.transport.write(data)  # type: ignore[union-attr]

    def on_url(self, url: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.headers = []


def serve_floor(kind: str, port: int, upstream_port: int) -> None:
    ClientSide.parses = kind == "parse"
    ClientSide.upstream_address = ("127.0.0.1", upstream_port)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(ClientSide, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(serve())


def start_floor(kind: str, upstream_port: int) -> tuple[ServerProcess, int]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", kind, str(port), str(upstream_port)]
    process = ServerProcess(f"floor-{kind}", argv)
    process.wait_until(lambda: port_open("127.0.0.1", port), 10, "listening")
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="fixed request rate, calls/s")
    parser.add_argument("--duration-s", type=int, default=8, help="length of each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, interleaved")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "UPSTREAM_PORT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.serve:
        serve_floor(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return
    require_tools("hey")
    with TansuBroker() as broker, KServeModelServer() as model:
        path = f"/v1/models/{model.model_name}:predict"
        model_port = int(model.url.rsplit(":", 1)[1])
        logger, logger_url = start_logger(model.url, broker.bootstrap)
        floors = {kind: start_floor(kind, model_port) for kind in FLOORS}
        targets = {kind: (process.pid, f"http://127.0.0.1:{port}{path}")
                   for kind, (process, port) in floors.items()}  # fmt: skip
        targets["logger"] = (logger.pid, logger_url + path)
        try:
            cpu_per_call = {name: [] for name in targets}
            for _pid, url in targets.values():
                hey_fixed_rate(url, args.rate, 3, 1)  # warm up
            for _ in range(args.rounds):
                for name, (pid, url) in targets.items():
                    before = cpu_seconds(pid)
                    run = hey_fixed_rate(url, args.rate, args.duration_s, 1)
                    cpu_per_call[name].append((cpu_seconds(pid) - before) / run.calls * 1e6)
        finally:
            logger.stop()
            for process, _ in floors.values():
                process.stop()
    print(f"\nCPU per call at {args.rate}/s, evenly spaced (median of {args.rounds} runs of "
          f"{args.duration_s} s, interleaved)")  # fmt: skip
    for name, values in cpu_per_call.items():
        runs = ", ".join(f"{value:.0f}" for value in values)
        print(f"{name:8} {statistics.median(values):6.0f} us   ({runs})")


if __name__ == "__main__":
    main()
