"""The proxy server's own settings, apart from any call."""

from __future__ import annotations

import asyncio

from logger.sidecar.proxy import SWEEP_MIN_INTERVAL_S, EdgeLimits, ProxyServer, Upstream


def test_the_timeout_sweep_runs_a_quarter_timeout_apart_within_10_ms_and_1_s() -> None:
    async def sweep_intervals() -> list[float]:
        intervals = []
        for timeout_s in (0.001, 0.4, 600.0):
            server = ProxyServer(
                upstream=Upstream("http://127.0.0.1:1"), builder=None, sink=None,  # type: ignore[arg-type]
                metrics=None, max_payload_bytes=0, upstream_timeout_s=timeout_s,  # type: ignore[arg-type]
            )  # fmt: skip
            intervals.append(server.sweep_interval_s)
            await server.drain(0)  # cancels the sweep
        return intervals

    assert asyncio.run(sweep_intervals()) == [SWEEP_MIN_INTERVAL_S, 0.1, 1.0]


def test_the_sweep_follows_the_shortest_of_the_upstream_and_edge_timeouts() -> None:
    async def sweep_interval(limits: EdgeLimits) -> float:
        server = ProxyServer(
            upstream=Upstream("http://127.0.0.1:1"), builder=None, sink=None,  # type: ignore[arg-type]
            metrics=None, max_payload_bytes=0, upstream_timeout_s=600.0,  # type: ignore[arg-type]
            limits=limits,
        )  # fmt: skip
        await server.drain(0)
        return server.sweep_interval_s

    assert asyncio.run(sweep_interval(EdgeLimits(header_timeout_s=0.4))) == 0.1
    assert asyncio.run(sweep_interval(EdgeLimits(body_timeout_s=0.8))) == 0.2
    assert asyncio.run(sweep_interval(EdgeLimits(idle_timeout_s=0.02))) == SWEEP_MIN_INTERVAL_S
    assert asyncio.run(sweep_interval(EdgeLimits())) == 1.0
