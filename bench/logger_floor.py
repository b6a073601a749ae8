"""What any proxy of the logger's design costs, beside the logger: CPU per call at a fixed rate.

Two floors run in front of the same KServe model server as the logger, with the same load:
`relay` forwards bytes both ways on uvloop protocols (no HTTP at all); `parse` also parses
both directions with httptools, with a Python callback per header, as the logger does. What
the logger costs above `parse` is its own per-call work: the exchange's state, header
rewriting, metrics, and the events.

Two native proxies run beside them where their tools are installed, as the floor of any
design on this machine: `nginx` (C, one worker process, upstream connections kept alive, no
access log; Debian's nginx-light) and `go` (Go's standard-library reverse proxy, the stack of
KServe's own agent and logger, with no logging; built from bench/native/ with Debian's
golang-go), the latter both as it runs by default (one thread per core) and with GOMAXPROCS=1.

    python bench/logger_floor.py [--rate 500] [--duration-s 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httptools
import uvloop
from common import cpu_times, hey_fixed_rate, require_tools, start_logger

from tests.fixtures.broker import TansuBroker
from tests.fixtures.kserve_server import KServeModelServer
from tests.fixtures.processes import ServerProcess, free_port, port_open

FLOORS = ("relay", "parse")
NATIVE_DIR = Path(__file__).resolve().parent / "native"
NGINX_CONFIG = """
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  upstream model {{ server 127.0.0.1:{upstream_port}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://model;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""


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


def listening(
    name: str, argv: list[str], port: int, env: dict[str, str] | None = None
) -> tuple[ServerProcess, int]:
    """A proxy started and answering on `port`."""
    process = ServerProcess(name, argv, env=env)
    process.wait_until(lambda: port_open("127.0.0.1", port), 10, "listening")
    return process, port


def start_floor(kind: str, upstream_port: int) -> tuple[ServerProcess, int]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", kind, str(port), str(upstream_port)]
    return listening(f"floor-{kind}", argv, port)


def start_nginx(upstream_port: int, workdir: Path) -> tuple[ServerProcess, int]:
    port = free_port()
    config = workdir / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(dir=workdir, port=port, upstream_port=upstream_port))
    return listening("floor-nginx", ["nginx", "-c", str(config), "-p", str(workdir)], port)


def build_go_proxy(workdir: Path) -> Path:
    binary = workdir / "reverse_proxy"
    env = {**os.environ, "GO111MODULE": "off", "GOCACHE": str(workdir / "go-cache")}
    subprocess.run(["go", "build", "-o", str(binary), str(NATIVE_DIR / "reverse_proxy.go")],
                   check=True, env=env)  # fmt: skip
    return binary


def start_go_proxy(binary: Path, upstream_url: str, threads: str) -> tuple[ServerProcess, int]:
    port = free_port()
    env = dict(os.environ)
    if threads:
        env["GOMAXPROCS"] = threads
    argv = [str(binary), upstream_url, f"127.0.0.1:{port}"]
    return listening(f"floor-go{threads}", argv, port, env)


def start_native(model_url: str, model_port: int) -> dict[str, tuple[ServerProcess, int]]:
    """The native floors whose tools are installed; the others are named as skipped."""
    workdir = Path(tempfile.mkdtemp(prefix="infermon-floor-"))
    native = {}
    if shutil.which("nginx"):
        native["nginx"] = start_nginx(model_port, workdir)
    else:
        print("nginx floor skipped: apt-get install nginx-light", file=sys.stderr)
    if shutil.which("go"):
        binary = build_go_proxy(workdir)
        native["go"] = start_go_proxy(binary, model_url, "")
        native["go-1proc"] = start_go_proxy(binary, model_url, "1")
    else:
        print("go floor skipped: apt-get install golang-go", file=sys.stderr)
    return native


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
        floors.update(start_native(model.url, model_port))
        targets = {kind: (process.pid, f"http://127.0.0.1:{port}{path}")
                   for kind, (process, port) in floors.items()}  # fmt: skip
        targets["logger"] = (logger.pid, logger_url + path)
        try:
            cpu_per_call: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            for _pid, url in targets.values():
                hey_fixed_rate(url, args.rate, 3, 1)  # warm up
            for _ in range(args.rounds):
                for name, (pid, url) in targets.items():
                    user_before, system_before = cpu_times(pid)
                    run = hey_fixed_rate(url, args.rate, args.duration_s, 1)
                    user_after, system_after = cpu_times(pid)
                    cpu_per_call[name].append(
                        ((user_after - user_before) / run.calls * 1e6,
                         (system_after - system_before) / run.calls * 1e6)
                    )  # fmt: skip
        finally:
            logger.stop()
            for process, _ in floors.values():
                process.stop()
    print(f"\nCPU per call at {args.rate}/s, evenly spaced (median of {args.rounds} runs of "
          f"{args.duration_s} s, interleaved)")  # fmt: skip
    for name, values in cpu_per_call.items():
        totals = [user + system for user, system in values]
        kernel = statistics.median(system for _, system in values)
        runs = ", ".join(f"{value:.0f}" for value in totals)
        print(f"{name:9} {statistics.median(totals):6.0f} us   ({runs}; kernel {kernel:.0f})")


if __name__ == "__main__":
    main()
