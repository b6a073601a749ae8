"""A change to the logger, measured: this tree's logger and another tree's side by side.

Both loggers run in front of one KServe model server and one broker; `hey` drives them in
turn at the same fixed rate, so the machine's drift falls on both alike. Prints each one's
CPU per logged call and added latency, per run and as medians, and their ratio; then, with
`--saturation-s`, the same for `wrk` at saturation (32 connections): calls/s and CPU per call.

    git worktree add /tmp/before <commit>   # the code to compare against
    python bench/logger_ab.py --baseline-tree /tmp/before [--rate 500] [--duration-s 8] [--rounds 5]
        [--saturation-s 5]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import cpu_seconds, hey_fixed_rate, require_tools, start_logger, wrk_saturation

from tests.fixtures.broker import TansuBroker
from tests.fixtures.kserve_server import KServeModelServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-tree", type=Path, required=True, help="checkout to compare")
    parser.add_argument("--rate", type=int, default=500, help="fixed request rate, calls/s")
    parser.add_argument("--duration-s", type=int, default=8, help="length of each run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each, alternating")
    parser.add_argument(
        "--saturation-s", type=int, default=0, help="then wrk runs this long, alternating; 0: none"
    )
    args = parser.parse_args()
    require_tools("hey", *(["wrk"] if args.saturation_s else []))

    with TansuBroker() as broker, KServeModelServer() as model:
        path = f"/v1/models/{model.model_name}:predict"
        baseline, baseline_url = start_logger(model.url, broker.bootstrap, tree=args.baseline_tree)
        changed, changed_url = start_logger(model.url, broker.bootstrap)
        loggers = {"baseline": (baseline.pid, baseline_url + path),
                   "this tree": (changed.pid, changed_url + path)}  # fmt: skip
        cpu_us: dict[str, list[float]] = {name: [] for name in loggers}
        p50_ms: dict[str, list[float]] = {name: [] for name in loggers}
        try:
            for pid_url in loggers.values():
                hey_fixed_rate(pid_url[1], args.rate, 3, workers=1)  # warm-up
            for round_number in range(args.rounds):
                for name, (pid, url) in loggers.items():
                    before = cpu_seconds(pid)
                    run = hey_fixed_rate(url, args.rate, args.duration_s, workers=1)
                    cpu_us[name].append((cpu_seconds(pid) - before) / run.calls * 1e6)
                    p50_ms[name].append(run.p50_ms)
                    print(f"round {round_number + 1} {name:>10}: {cpu_us[name][-1]:.0f} us/call, "
                          f"p50 {run.p50_ms:.2f} ms, failed {run.errors}", flush=True)  # fmt: skip
            saturated = saturation(loggers, args) if args.saturation_s else None
        finally:
            changed.stop()
            baseline.stop()
    medians = {name: statistics.median(values) for name, values in cpu_us.items()}
    for name, median in medians.items():
        print(f"{name:>10}: median {median:.0f} us per logged call, "
              f"p50 {statistics.median(p50_ms[name]):.2f} ms")  # fmt: skip
    print(f"this tree / baseline: {medians['this tree'] / medians['baseline']:.3f}")
    if saturated is not None:
        for name, (rates, cpus) in saturated.items():
            print(f"{name:>10}: saturation median {statistics.median(rates):.0f} calls/s "
                  f"({min(rates):.0f}-{max(rates):.0f}), {statistics.median(cpus):.0f} us "
                  f"per call ({min(cpus):.0f}-{max(cpus):.0f})")  # fmt: skip
        ratio = statistics.median(saturated["this tree"][0]) / statistics.median(
            saturated["baseline"][0]
        )
        print(f"this tree / baseline at saturation, calls/s: {ratio:.3f}")


def saturation(
    loggers: dict[str, tuple[int, str]], args: argparse.Namespace
) -> dict[str, tuple[list[float], list[float]]]:
    """wrk through each logger in turn (which goes first alternates): calls/s, CPU per call."""
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in loggers}
    for round_number in range(args.rounds):
        order = list(loggers.items())
        for name, (pid, url) in order if round_number % 2 == 0 else reversed(order):
            before = cpu_seconds(pid)
            rate = wrk_saturation(url, args.saturation_s)
            results[name][0].append(rate)
            results[name][1].append((cpu_seconds(pid) - before) / (rate * args.saturation_s) * 1e6)
            print(f"saturation round {round_number + 1} {name:>10}: {rate:.0f} calls/s, "
                  f"{results[name][1][-1]:.0f} us/call", flush=True)  # fmt: skip
    return results


if __name__ == "__main__":
    main()
