"""Hands events to Kafka without ever making the caller wait, and without losing them.

Policy, in order:
1. While Kafka is reachable, nothing is spooled and the in-memory bytes stay under the budget,
   an event goes straight to librdkafka's queue.
2. Otherwise it is appended to the disk spool. Once the spool holds anything, new events queue
   behind it so that replay keeps their order.
3. A failed delivery (timeout, broker gone) puts the event in the spool too.
4. Only when the spool is full (or disabled) is an event dropped, counted and logged.

Everything runs on the event loop's thread: delivery callbacks fire inside `poll()`, which the
background task calls, so no locks are needed.

The proxy does not build events while it answers a call: it `defer()`s them, and the background
task builds and produces every deferred event at its next tick. At a few hundred calls/s a call
then costs one list append, and the event code runs warm over a batch instead of cold per call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from infermon.events import KafkaRecord
from logger.metrics import SinkMetrics
from logger.settings import SinkSettings
from logger.spool import DiskSpool, SpooledRecord

log = logging.getLogger(__name__)

# Delivery reports are collected this often. Each wake-up of the loop costs ~30 µs of CPU on
# a small VM, so rarer is cheaper; with linger.ms 50, reports come in batches anyway.
POLL_INTERVAL_S = 0.05
REPLAY_BATCH_RECORDS = 1000
# Deferred events are built and produced at once when this many wait, or this many payload
# bytes: at saturation that is a few ms of calls, and memory stays bounded between ticks.
MAX_DEFERRED_EVENTS = 256
MAX_DEFERRED_BYTES = 4 * 1024 * 1024
# A tick sends its events this many at a time, letting calls in between: a whole tick's worth
# at once holds the loop for a millisecond or more, which calls arriving then would wait out.
DEFERRED_SLICE_EVENTS = 8
PROBE_TIMEOUT_S = 2.0
MAX_BACKOFF_S = 30.0
DROP_LOG_INTERVAL_S = 10.0
# Errors after which sending the same bytes again can never succeed.
PERMANENT_ERRORS = frozenset(
    {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError._INVALID_ARG}
)


def record_size(record: KafkaRecord) -> int:
    return (
        len(record.value)
        + len(record.key or b"")
        + sum(len(name) + len(value) for name, value in record.headers)
    )


@dataclass
class _ReplayBatch:
    """Delivery outcomes of one batch taken from the spool."""

    expected: int
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.delivered + self.failed >= self.expected

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.errors.append(str(error))


class EventSink:
    """The one way events leave the process: `send()` never blocks and never raises."""

    def __init__(
        self,
        settings: SinkSettings,
        metrics: SinkMetrics,
        spool: DiskSpool | None,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self._topic = settings.topic
        self._budget_bytes = settings.buffer_max_bytes
        self._delivery_timeout_s = settings.delivery_timeout_ms / 1000
        self._metrics = metrics
        self._spool = spool
        self._producer = producer_factory(self._producer_config(settings))
        self._queued_bytes = 0
        self._queued_events = 0
        self._deferred: list[Callable[[], KafkaRecord]] = []
        self._deferred_bytes = 0
        self._broker_up = True
        self._closing = False
        self._running = False
        self._run_finished = asyncio.Event()
        self._backoff_s = 0.5
        self._next_probe = 0.0
        self._dropped_since_log = 0
        self._last_drop_log = 0.0
        metrics.queue_bytes.set_function(lambda: self._queued_bytes)
        metrics.queue_events.set_function(lambda: self._queued_events + len(self._deferred))
        metrics.spool_events.set_function(lambda: spool.pending_records if spool else 0)
        metrics.spool_bytes.set_function(lambda: spool.pending_bytes if spool else 0)

    def _producer_config(self, settings: SinkSettings) -> dict[str, Any]:
        return settings.kafka_client_config(
            **{
                "enable.idempotence": True,
                # At a few hundred calls/s, librdkafka's broker thread wakes per message with
                # linger.ms 5 (~46 µs CPU per event here); 50 ms batches cut that to ~17 µs.
                "linger.ms": 50,
                "compression.type": "lz4",
                "message.timeout.ms": settings.delivery_timeout_ms,
                # Our own budget is the real limit; librdkafka's must not refuse first.
                "queue.buffering.max.kbytes": max(1, 2 * settings.buffer_max_bytes // 1024),
                "queue.buffering.max.messages": 1_000_000,
                "error_cb": self._on_client_error,
            }
        )

    @property
    def broker_up(self) -> bool:
        return self._broker_up

    @property
    def queued_events(self) -> int:
        return self._queued_events + len(self._deferred)

    def healthy(self) -> bool:
        """False only when events are being dropped right now: Kafka down and no spool room."""
        return self._broker_up or self._spool is not None

    def send(self, record: KafkaRecord) -> None:
        size = record_size(record)
        if (
            not self._broker_up
            or (self._spool is not None and self._spool.pending_records)
            or self._queued_bytes + size > self._budget_bytes
        ):
            self._to_spool(record)
            return
        try:
            self._producer.produce(
                self._topic,
                record.value,
                record.key,
                headers=record.headers,
                on_delivery=partial(self._on_delivery, record, size, time.perf_counter()),
            )
        except BufferError:
            self._to_spool(record)
            return
        except KafkaException as error:
            self._drop(f"refused by the producer: {error}", "refused")
            return
        self._queued_bytes += size
        self._queued_events += 1

    def defer(self, build: Callable[[], KafkaRecord], payload_bytes: int) -> None:
        """Send `build()` at the next tick of `run()`; never blocks, never raises.

        `build` must only read what no longer changes; `payload_bytes` is what it holds.
        """
        self._deferred.append(build)
        self._deferred_bytes += payload_bytes
        if (
            len(self._deferred) >= MAX_DEFERRED_EVENTS
            or self._deferred_bytes >= MAX_DEFERRED_BYTES
            # Spooling or shutting down: the slow path anyway, and the spool's counts are
            # then exact as soon as the call is answered.
            or not self._broker_up
            or self._closing
            or (self._spool is not None and self._spool.pending_records)
        ):
            self.send_deferred()

    def send_deferred(self) -> None:
        """Build and send every deferred event, in the order they were deferred."""
        deferred = self._deferred
        if not deferred:
            return
        self._deferred = []
        self._deferred_bytes = 0
        for build in deferred:
            self._send_built(build)

    async def _send_deferred_in_slices(self) -> None:
        """`send_deferred`, for the events deferred so far, a slice per turn of the loop."""
        left = len(self._deferred)
        while left > 0 and self._deferred:
            count = min(DEFERRED_SLICE_EVENTS, left)
            built, self._deferred = self._deferred[:count], self._deferred[count:]
            left -= count
            for build in built:
                self._send_built(build)
            if left > 0:
                await asyncio.sleep(0)
        if not self._deferred:
            self._deferred_bytes = 0

    def _send_built(self, build: Callable[[], KafkaRecord]) -> None:
        try:
            record = build()
        except Exception:  # a bug in building one event must not lose the others
            log.exception("could not build an event")
            self._drop("could not build the event", "unbuildable")
            return
        self.send(record)

    def _on_delivery(
        self,
        record: KafkaRecord,
        size: int,
        started: float,
        error: KafkaError | None,
        _message: Message,
    ) -> None:
        self._queued_bytes -= size
        self._queued_events -= 1
        if error is None:
            self._broker_up = True
            self._metrics.produced.inc()
            self._metrics.produce_latency.observe(time.perf_counter() - started)
            return
        self._metrics.failed.inc()
        if error.code() in PERMANENT_ERRORS:
            self._drop(f"refused by Kafka: {error}", "refused")
            return
        if error.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self._mark_down(f"delivery failed: {error}")
        self._to_spool(record)

    def _on_client_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._mark_down(str(error))
        else:
            log.warning("kafka client: %s", error)

    def _mark_down(self, reason: str) -> None:
        if self._broker_up:
            log.warning("kafka unreachable, spooling events to disk: %s", reason)
        self._broker_up = False
        self._next_probe = time.monotonic() + self._backoff_s

    def _to_spool(self, record: KafkaRecord) -> None:
        if self._spool is None:
            self._drop("kafka unavailable and no spool configured", "no_spool")
            return
        spooled = SpooledRecord(self._topic, record.key, record.value, tuple(record.headers))
        try:
            appended = self._spool.append(spooled)
        except ValueError:  # the spool is closed: only after shutdown
            appended = False
        if not appended:
            self._drop("spool full or closed", "spool_full")
            return
        self._metrics.spooled.inc()

    def _drop(self, reason: str, label: str) -> None:
        self._metrics.dropped.labels(label).inc()
        self._dropped_since_log += 1
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.error("dropped %d event(s): %s", self._dropped_since_log, reason)
            self._dropped_since_log = 0
            self._last_drop_log = now

    async def run(self) -> None:
        """Serve delivery callbacks and replay the spool until `close()`."""
        self._running = True
        try:
            while not self._closing:
                await self._send_deferred_in_slices()
                self._producer.poll(0)
                if self._spool is not None and self._spool.pending_records:
                    await self._replay_once()
                await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            self._run_finished.set()

    async def _replay_once(self) -> None:
        assert self._spool is not None
        if not self._broker_up:
            if time.monotonic() < self._next_probe or not await self._probe():
                return
            log.info(
                "kafka reachable again; replaying %d spooled event(s)", self._spool.pending_records
            )
        batch = self._spool.read_batch(REPLAY_BATCH_RECORDS)
        outcome = _ReplayBatch(expected=len(batch))
        for record in batch:
            try:
                self._producer.produce(
                    record.topic,
                    record.value,
                    record.key,
                    headers=list(record.headers),
                    on_delivery=outcome.on_delivery,
                )
            except (BufferError, KafkaException) as error:
                outcome.failed += outcome.expected - outcome.delivered - outcome.failed
                outcome.errors.append(str(error))
                break
        deadline = time.monotonic() + self._delivery_timeout_s + 5
        while not outcome.done and time.monotonic() < deadline and not self._closing:
            self.send_deferred()  # into the spool, behind the batch: calls go on meanwhile
            self._producer.poll(0)
            await asyncio.sleep(0.001)
        if outcome.failed or not outcome.done:
            # Nothing is committed: the batch is sent again later; duplicates keep their ids.
            self._mark_down(f"replay failed: {outcome.errors[:1]}")
            self._backoff_s = min(MAX_BACKOFF_S, self._backoff_s * 2)
            self._next_probe = time.monotonic() + self._backoff_s
            return
        self._spool.commit(len(batch))
        self._metrics.replayed.inc(len(batch))
        self._broker_up = True
        self._backoff_s = 0.5

    async def _probe(self) -> bool:
        """Ask for metadata in a worker thread: the only cheap way to see a broker is back."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None, partial(self._producer.list_topics, timeout=PROBE_TIMEOUT_S)
            )
        except KafkaException:
            self._backoff_s = min(MAX_BACKOFF_S, self._backoff_s * 2)
            self._next_probe = time.monotonic() + self._backoff_s
            return False
        return True

    async def close(self, timeout_s: float) -> None:
        """Deliver what is in memory within `timeout_s`; the rest goes to the spool."""
        self._closing = True
        if self._running:
            await self._run_finished.wait()  # a replay in progress ends before the spool closes
        self.send_deferred()
        loop = asyncio.get_running_loop()
        if self._broker_up and self._queued_events:
            await loop.run_in_executor(None, self._producer.flush, timeout_s)
        if self._queued_events:
            # Purged events come back through the delivery callback, which spools them.
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.poll(0)
            self._producer.flush(0)
        if self._spool is not None:
            self._spool.close()
        log.info(
            "event sink closed; %d event(s) left in the spool",
            self._spool.pending_records if self._spool else 0,
        )
