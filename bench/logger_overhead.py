"""What the logger costs a model server's clients: latency, CPU and throughput, side by side.

Runs KServe's own model server, the embedded broker and the logger; then, in one run and
interleaved, the same load generator against the model server directly and through the logger.

    python bench/logger_overhead.py [--rate 500] [--duration-s 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics

from common import (
    cpu_seconds,
    hey_fixed_rate,
    require_tools,
    start_logger,
    wrk_saturation,
)

from tests.fixtures.broker import TansuBroker
from tests.fixtures.kserve_server import KServeModelServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="fixed request rate, calls/s")
    parser.add_argument("--duration-s", type=int, default=20, help="length of each run")
    parser.add_argument("--rounds", type=int, default=2, help="direct/logger pairs per test")
    parser.add_argument(
        "--workers", type=int, action="append",
        help="hey workers sharing the rate: 1 spaces calls evenly; 10 sends them in bursts "
        "of 10 (default: both)",
    )  # fmt: skip
    parser.add_argument("--logger-arg", action="append", default=[], help="extra logger flag")
    args = parser.parse_args()
    require_tools("hey", "wrk")

    with TansuBroker() as broker, KServeModelServer() as model:
        logger, logger_url = start_logger(model.url, broker.bootstrap, *args.logger_arg)
        path = f"/v1/models/{model.model_name}:predict"
        direct, proxied = model.url + path, logger_url + path
        try:
            print(f"warming up; {args.rounds} round(s) of {args.duration_s} s at {args.rate}/s")
            hey_fixed_rate(direct, args.rate, 3)
            hey_fixed_rate(proxied, args.rate, 3)
            for workers in args.workers or [1, 10]:
                fixed_rate(direct, proxied, logger.pid, workers, args)
            saturation(direct, proxied, logger.pid, args)
        finally:
            logger.stop()


def fixed_rate(
    direct: str, proxied: str, logger_pid: int, workers: int, args: argparse.Namespace
) -> None:
    direct_runs, logged_runs, cpu_per_call_us = [], [], []
    for _ in range(args.rounds):
        direct_runs.append(hey_fixed_rate(direct, args.rate, args.duration_s, workers))
        cpu_before = cpu_seconds(logger_pid)
        run = hey_fixed_rate(proxied, args.rate, args.duration_s, workers)
        cpu_per_call_us.append((cpu_seconds(logger_pid) - cpu_before) / run.calls * 1e6)
        logged_runs.append(run)
    d50 = statistics.median(r.p50_ms for r in direct_runs)
    d99 = statistics.median(r.p99_ms for r in direct_runs)
    l50 = statistics.median(r.p50_ms for r in logged_runs)
    l99 = statistics.median(r.p99_ms for r in logged_runs)
    errors = sum(r.errors for r in direct_runs + logged_runs)
    print(f"\nfixed rate {args.rate}/s from {workers} hey worker(s), "
          f"median of {args.rounds} runs of {args.duration_s} s")  # fmt: skip
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'direct':24}{d50:>10.3f}{d99:>10.3f}")
    print(f"{'through the logger':24}{l50:>10.3f}{l99:>10.3f}")
    print(f"{'added':24}{l50 - d50:>10.3f}{l99 - d99:>10.3f}   (target <= 0.5 / 2.0)")
    print(f"logger CPU per logged call: {statistics.median(cpu_per_call_us):.0f} us "
          f"(target <= 150); failed calls: {errors}")  # fmt: skip


def saturation(direct: str, proxied: str, logger_pid: int, args: argparse.Namespace) -> None:
    """Throughput both ways, and the logger's CPU per call when calls arrive back to back
    (a wake-up of its loop then serves several calls, so a call costs less than at 500/s)."""
    direct_rates, logged_rates, cpu_per_call_us = [], [], []
    for _ in range(args.rounds):
        direct_rates.append(wrk_saturation(direct, args.duration_s // 2))
        cpu_before = cpu_seconds(logger_pid)
        logged_rates.append(wrk_saturation(proxied, args.duration_s // 2))
        calls = logged_rates[-1] * (args.duration_s // 2)
        cpu_per_call_us.append((cpu_seconds(logger_pid) - cpu_before) / calls * 1e6)
    d, lg = statistics.median(direct_rates), statistics.median(logged_rates)
    print(f"\nsaturation (wrk, 32 connections), median of {args.rounds}")
    print(f"direct {d:.0f} req/s; through the logger {lg:.0f} req/s; "
          f"ratio {lg / d:.2f} (target >= 0.8)")  # fmt: skip
    print(f"logger CPU per logged call at saturation: {statistics.median(cpu_per_call_us):.0f} us")


if __name__ == "__main__":
    main()
