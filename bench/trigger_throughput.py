"""Kafka-triggered inference against direct HTTP calls: throughput at the same concurrency.

Runs the embedded broker and KServe's own model server, then, in one run and interleaved:
`wrk` posting to the model server over `--concurrency` keep-alive connections, and
`infermon trigger --concurrency N` answering `--records` requests queued on a topic (binary
CloudEvents with v1 bodies, distinct keys, payload logging on). The trigger's rate is measured
from its first answer to its last, by the answers' Kafka timestamps, so the group join is left
out; every answer is checked.

With two or more CPUs the model server gets the last CPU to itself and everything else (wrk,
or the trigger and the broker) the others, in both runs alike: left to the scheduler, the
placement of the trigger's threads next to the model server's changes the result by up to 2x
from run to run (`--no-pin` shows it).

    python bench/trigger_throughput.py [--records 30000] [--concurrency 16] [--rounds 3]

`--baseline-tree DIR` also runs the trigger from another checkout in each round, in turn with
this one (which goes first alternates), and prints both and their ratio: a change, measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from common import REPO_ROOT, V1_BODY, cpu_seconds, wrk_saturation
from confluent_kafka import Producer

from infermon.defaults import dead_letter_topic
from tests.fixtures.broker import TansuBroker, create_topic, read_topic
from tests.fixtures.kserve_server import KServeModelServer
from tests.fixtures.processes import ServerProcess, free_port, http_ok
from tests.fixtures.prometheus import scrape

ANSWERED = 'infermon_trigger_answered_total{code="200"}'


@dataclass
class TriggerRun:
    answers_per_s: float
    trigger_cpu_us: float  # trigger process CPU per answer
    broker_cpu_us: float  # broker CPU per answer


def pid_of(argument: str) -> int:
    """The process with `argument` on its command line (the fixture keeps its child private)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argument.encode() in arguments:
                return int(entry.name)
    raise LookupError(f"no process runs with {argument}")


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus` (children started later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def queue_requests(bootstrap: str, topic: str, records: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for number in range(records):
        request_id = f"bench-{number}"
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", request_id.encode()),
            ("ce_source", b"/bench"), ("ce_type", b"org.kubeflow.serving.inference.request"),
            ("content-type", b"application/json"),
        ]  # fmt: skip
        while True:
            try:
                producer.produce(topic, V1_BODY.encode(), uuid.uuid4().bytes, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def run_trigger(
    broker: TansuBroker,
    broker_pid: int,
    model: KServeModelServer,
    args: argparse.Namespace,
    tree: Path = REPO_ROOT,
) -> TriggerRun:
    stem = f"bench-{uuid.uuid4().hex[:8]}"
    topics = {"input": f"{stem}.in", "output": f"{stem}.out", "log": f"{stem}.payloads"}
    for name in (*topics.values(), dead_letter_topic(topics["input"])):
        create_topic(broker.bootstrap, name, partitions=args.partitions)
    queue_requests(broker.bootstrap, topics["input"], args.records)
    admin_port = free_port()
    argv = [
        sys.executable, "-m", "infermon.cli", "trigger", "--kafka-bootstrap", broker.bootstrap,
        "--input-topic", topics["input"], "--output-topic", topics["output"],
        "--log-topic", topics["log"] if args.log else "", "--model-url", model.url,
        "--model-name", model.model_name, "--concurrency", str(args.concurrency),
        "--admin-host", "127.0.0.1", "--admin-port", str(admin_port),
        "--spool-dir", tempfile.mkdtemp(prefix="infermon-bench-spool-"),
        "--session-timeout-ms", "6000",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    trigger = ServerProcess("bench-trigger", argv, cwd=tree, env=env)
    metrics_url = f"http://127.0.0.1:{admin_port}/metrics"
    try:
        trigger.wait_until(lambda: http_ok(f"http://127.0.0.1:{admin_port}/readyz"), 20, "ready")
        cpu_before = cpu_seconds(trigger.pid), cpu_seconds(broker_pid)
        # Watched through its metrics, not by reading the answers meanwhile: a reader would
        # compete for the same two cores.
        trigger.wait_until(
            lambda: scrape(metrics_url).get(ANSWERED) == args.records, 300, "every answer"
        )
        cpu_after = cpu_seconds(trigger.pid), cpu_seconds(broker_pid)
    finally:
        trigger.stop()
    answers = read_topic(broker.bootstrap, topics["output"], args.records, timeout_s=60)
    if len(answers) != args.records:
        raise RuntimeError(f"{len(answers)} answers to {args.records} requests")
    for answer in answers:
        headers = dict(answer.headers() or [])
        if headers.get("ce_statuscode") != b"200":
            raise RuntimeError(f"an answer has status {headers.get('ce_statuscode')!r}")
    if len({dict(a.headers() or [])["ce_id"] for a in answers}) != args.records:
        raise RuntimeError("answers are missing or repeated")
    times_ms = sorted(answer.timestamp()[1] for answer in answers)
    elapsed_s = (times_ms[-1] - times_ms[0]) / 1000
    # CPU is counted from readiness to the last answer, so it includes the group join.
    return TriggerRun(
        answers_per_s=(args.records - 1) / elapsed_s,
        trigger_cpu_us=(cpu_after[0] - cpu_before[0]) / args.records * 1e6,
        broker_cpu_us=(cpu_after[1] - cpu_before[1]) / args.records * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000, help="requests per trigger run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--partitions", type=int, default=4, help="of every topic")
    parser.add_argument("--rounds", type=int, default=3, help="direct/trigger pairs")
    parser.add_argument("--duration-s", type=int, default=10, help="length of each direct run")
    parser.add_argument(
        "--no-log", dest="log", action="store_false", help="run the trigger with --log-topic ''"
    )
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="leave CPU placement to the scheduler"
    )
    parser.add_argument("--baseline-tree", type=Path, help="checkout to compare, run in turn")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    pinned = args.pin and len(cpus) >= 2
    if pinned:
        pin(os.getpid(), set(cpus[:-1]))  # inherited by the broker, wrk and the trigger

    with TansuBroker() as broker, KServeModelServer() as model:
        broker_pid = pid_of(f"tcp://127.0.0.1:{broker.port}")
        if pinned:
            pin(pid_of(str(model.port)), {cpus[-1]})
            print(f"model server on CPU {cpus[-1]}; wrk, broker and trigger on CPUs {cpus[:-1]}")
        direct_url = f"{model.url}/v1/models/{model.model_name}:predict"
        print(f"warming up; {args.rounds} round(s), concurrency {args.concurrency}, "
              f"{args.records} requests per trigger run, payload logging "
              f"{'on' if args.log else 'off'}")  # fmt: skip
        wrk_saturation(direct_url, 3, connections=args.concurrency)
        direct_rates: list[float] = []
        trigger_runs: list[TriggerRun] = []
        baseline_runs: list[TriggerRun] = []
        for round_number in range(1, args.rounds + 1):
            direct_rates.append(
                wrk_saturation(direct_url, args.duration_s, connections=args.concurrency)
            )
            arms = [(trigger_runs, REPO_ROOT, "trigger")]
            if args.baseline_tree is not None:
                arms.append((baseline_runs, args.baseline_tree, "baseline"))
                if round_number % 2 == 0:
                    arms.reverse()
            for runs, tree, name in arms:
                runs.append(run_trigger(broker, broker_pid, model, args, tree))
                print(f"round {round_number}: {name} {runs[-1].answers_per_s:.0f}/s, "
                      f"{runs[-1].trigger_cpu_us:.0f} us CPU per answer")  # fmt: skip
                time.sleep(1)
            print(f"round {round_number}: direct {direct_rates[-1]:.0f}/s")
    direct = statistics.median(direct_rates)
    triggered = statistics.median(run.answers_per_s for run in trigger_runs)
    print(f"\nmedian of {args.rounds} rounds, concurrency {args.concurrency}")
    print(f"{'direct HTTP (wrk)':28}{direct:>10.0f} calls/s")
    print(f"{'infermon trigger':28}{triggered:>10.0f} answers/s")
    print(f"{'ratio trigger / direct':28}{triggered / direct:>10.2f}   (target >= 0.8)")
    print(f"trigger CPU per answer: {statistics.median(r.trigger_cpu_us for r in trigger_runs):.0f}"
          f" us; broker CPU per answer: "
          f"{statistics.median(r.broker_cpu_us for r in trigger_runs):.0f} us")  # fmt: skip
    if baseline_runs:
        compare(trigger_runs, baseline_runs)


def compare(changed: list[TriggerRun], baseline: list[TriggerRun]) -> None:
    for label, runs in (("baseline tree", baseline), ("this tree", changed)):
        rates = sorted(run.answers_per_s for run in runs)
        cpus = sorted(run.trigger_cpu_us for run in runs)
        print(f"{label:>14}: {statistics.median(rates):.0f} answers/s ({rates[0]:.0f}-"
              f"{rates[-1]:.0f}), {statistics.median(cpus):.0f} us CPU per answer "
              f"({cpus[0]:.0f}-{cpus[-1]:.0f})")  # fmt: skip
    for label, field in (("answers/s", "answers_per_s"), ("CPU per answer", "trigger_cpu_us")):
        ratio = statistics.median(getattr(r, field) for r in changed) / statistics.median(
            getattr(r, field) for r in baseline
        )
        print(f"this tree / baseline, {label}: {ratio:.3f}")


if __name__ == "__main__":
    main()
