"""The event sink alone: events per second into Kafka, beside a bare confluent-kafka producer.

Both send the same pre-built KServe-style events (about 60 bytes of payload, 17 headers) to
the embedded broker in the same run; the sink adds its byte budget, spool checks and metrics.
Building the events is timed separately.

    python bench/producer_rate.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import common  # noqa: F401  (puts the repository on sys.path)
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from logger.producer.capture import CallRecord, EventBuilder
from logger.producer.metrics import SinkMetrics
from logger.producer.sink import EventSink
from logger.settings import LoggerSettings
from logger.sidecar import event_options
from tests.fixtures.broker import TansuBroker, create_topic


def build_records(count: int) -> tuple[list, float]:
    builder = EventBuilder(
        event_options(LoggerSettings(inference_service="iris", namespace="bench"))
    )
    started = time.perf_counter()
    records = []
    for number in range(count):
        call = CallRecord(
            request_id=f"call-{number}", method="POST", path="/v1/models/iris:predict",
            request_headers=[(b"content-type", b"application/json")],
            request_content_type="application/json",
            request_body=b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}',
            request_truncated=False, received_at=datetime.now(UTC),
        )  # fmt: skip
        records.append(builder.request_event(call))
    return records, count / (time.perf_counter() - started)


def bare_producer_rate(bootstrap: str, topic: str, records: list) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 5, "compression.type": "lz4",
                         "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    started = time.perf_counter()
    for record in records:
        while True:
            try:
                producer.produce(topic, record.value, record.key, headers=record.headers)
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(60)
    return len(records) / (time.perf_counter() - started)


async def sink_rate(bootstrap: str, topic: str, records: list) -> float:
    settings = LoggerSettings(kafka_bootstrap=bootstrap, topic=topic, spool_dir="")
    registry = CollectorRegistry()
    sink = EventSink(settings, SinkMetrics(registry), spool=None)
    runner = asyncio.create_task(sink.run())
    started = time.perf_counter()
    for start in range(0, len(records), 1000):
        for record in records[start : start + 1000]:
            sink.send(record)
        await asyncio.sleep(0)
    while (registry.get_sample_value("infermon_events_produced_total") or 0) < len(records):
        dropped = registry.get_sample_value("infermon_events_dropped_total", {"reason": "no_spool"})
        if dropped:
            raise RuntimeError(f"{dropped} events dropped: the budget is too small for the run")
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await sink.close(10)
    runner.cancel()
    return len(records) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    records, build_rate = build_records(args.events)
    with TansuBroker() as broker:
        for topic in ("bench.bare", "bench.sink"):
            create_topic(broker.bootstrap, topic)
        bare = bare_producer_rate(broker.bootstrap, "bench.bare", records)
        sink = asyncio.run(sink_rate(broker.bootstrap, "bench.sink", records))
    print(f"{args.events} events, delivered and acknowledged")
    print(f"bare confluent-kafka producer: {bare:>9.0f} events/s")
    print(f"infermon EventSink:            {sink:>9.0f} events/s  "
          f"({sink / bare:.2f} x bare; target >= 50000)")  # fmt: skip
    print(f"building events (EventBuilder): {build_rate:>8.0f} events/s")


if __name__ == "__main__":
    main()
