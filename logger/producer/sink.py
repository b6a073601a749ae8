"""Hands events to Kafka without ever making the caller wait, and without losing them.

Policy, in order:
1. While Kafka is reachable, nothing is spooled and the in-memory bytes stay under the budget,
   an event goes straight to librdkafka's queue.
2. Otherwise it is appended to the disk spool. Once the spool holds anything, new events queue
   behind it so that replay keeps their order.
3. A failed delivery (timeout, broker gone) puts the event in the spool too.
4. Only when the spool is full (or disabled) is an event dropped, counted and logged.

No event can block the others. One larger than the producer's `message.max.bytes` is cut before
it is produced or spooled (`cut_to_fit`): its payload first, then its largest attributes, each
with a stated marker; `truncated` and `originalbytes` say so. An event Kafka still refuses for
good (`PERMANENT_ERRORS`), from the spool or not, is set aside in the spool directory's
quarantine file with the reason, and replay goes on with the next one.

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

from infermon.events import EXT_TRUNCATED, KAFKA_ATTRIBUTE_PREFIX, KafkaRecord
from infermon.throttled_log import ThrottledLog, ThrottledLogs
from logger.producer.metrics import SinkMetrics
from logger.producer.settings import SinkSettings
from logger.producer.spool import DiskSpool, SpooledRecord

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
# A producer that lets every replayed event time out while Kafka answers its probes is stuck:
# an idempotent producer whose broker lost its producer id (a broker that came back empty)
# waits for it forever. After this many such replays in a row, a new producer takes over.
STALLED_REPLAYS_BEFORE_NEW_PRODUCER = 2
RETIRED_PRODUCER_DRAIN_S = 1.0
MAX_BACKOFF_S = 30.0
DROP_LOG_INTERVAL_S = 10.0
# Errors after which sending the same bytes again can never succeed.
PERMANENT_ERRORS = frozenset(
    {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError._INVALID_ARG}
)
# What librdkafka counts against message.max.bytes beyond the key, value and header bytes: 36
# bytes per record (measured: librdkafka 2.x accepts a 999,964-byte value alone under
# 1,000,000) and two varints of at most 5 bytes each per header (measured: 2 for short ones).
RECORD_OVERHEAD_BYTES = 36
HEADER_OVERHEAD_BYTES = 10
# Set on an event the sink cut to fit: the bytes of its key, value and headers before the cut.
EXT_ORIGINAL_BYTES = "originalbytes"
TRUNCATED_HEADER = KAFKA_ATTRIBUTE_PREFIX + EXT_TRUNCATED
ORIGINAL_BYTES_HEADER = KAFKA_ATTRIBUTE_PREFIX + EXT_ORIGINAL_BYTES
# What ends an attribute value (or key) cut to fit; the number is its size before the cut.
CUT_MARKER = "...[cut from {} bytes]"
# An attribute value (or key) cut to fit keeps at most this many bytes. The same for every
# event, so that a call's request and response events keep the same key and id; only with a
# tiny message.max.bytes or very many attributes are they cut shorter, to what fits.
ATTRIBUTE_CUT_BYTES = 4096
# An event whose attributes alone are too large keeps at most this share of the room for its
# payload; the attributes are cut to leave it.
PAYLOAD_SHARE_WHEN_ATTRIBUTES_CUT = 4  # a quarter


def _spooled(topic: str, record: KafkaRecord) -> SpooledRecord:
    return SpooledRecord(topic, record.key, record.value, tuple(record.headers))


def record_size(record: KafkaRecord) -> int:
    return (
        len(record.value)
        + len(record.key or b"")
        + sum(len(name) + len(value) for name, value in record.headers)
    )


@dataclass(frozen=True, slots=True)
class RecordFit:
    """How a record measures against the producer's `message.max.bytes`."""

    wire_bytes: int  # what the producer counts against max_bytes, at most this
    max_bytes: int
    # Payload bytes that fit beside the record's key and attributes once `cut_to_fit` marks
    # them; negative when those alone are too large and `cut_to_fit` would cut attributes too.
    payload_room: int

    @property
    def fits(self) -> bool:
        return self.wire_bytes <= self.max_bytes


def record_fit(record: KafkaRecord, max_bytes: int) -> RecordFit:
    """Whether `record` can be produced under `max_bytes` (the producer's message.max.bytes,
    `SinkSettings.max_record_bytes`), and how much payload would fit if it were cut."""
    original_bytes = len(record.value) + len(record.key or b"") + _header_bytes(record.headers)
    wire_bytes = RECORD_OVERHEAD_BYTES + HEADER_OVERHEAD_BYTES * len(record.headers)
    wire_bytes += original_bytes
    marked = _marked_headers(record.headers, original_bytes)
    room = (
        max_bytes
        - RECORD_OVERHEAD_BYTES
        - HEADER_OVERHEAD_BYTES * len(marked)
        - len(record.key or b"")
        - _header_bytes(marked)
    )
    return RecordFit(wire_bytes, max_bytes, room)


def cut_to_fit(record: KafkaRecord, max_bytes: int) -> KafkaRecord | None:
    """`record` cut to fit `max_bytes`: its payload, and if its key and attributes alone are
    too large, the largest of them too, each ending with `CUT_MARKER`; `truncated` is set and
    `originalbytes` keeps the size before the cut. None if even that cannot fit (thousands of
    attributes). Values are cut on a UTF-8 character boundary."""
    original_bytes = len(record.value) + len(record.key or b"") + _header_bytes(record.headers)
    headers = _marked_headers(record.headers, original_bytes)
    key = record.key
    room = max_bytes - RECORD_OVERHEAD_BYTES - HEADER_OVERHEAD_BYTES * len(headers)
    attribute_bytes = len(key or b"") + _header_bytes(headers)
    if attribute_bytes > room:
        target = room - min(len(record.value), room // PAYLOAD_SHARE_WHEN_ATTRIBUTES_CUT)
        cut = _cut_attributes(key, headers, target)
        if cut is None:
            return None
        key, headers = cut
        attribute_bytes = len(key or b"") + _header_bytes(headers)
    return KafkaRecord(key=key, value=record.value[: room - attribute_bytes], headers=headers)


def _header_bytes(headers: list[tuple[str, bytes]]) -> int:
    return sum(len(name.encode()) + len(value) for name, value in headers)


def _marked_headers(
    headers: list[tuple[str, bytes]], original_bytes: int
) -> list[tuple[str, bytes]]:
    marks = {TRUNCATED_HEADER: b"true", ORIGINAL_BYTES_HEADER: str(original_bytes).encode()}
    marked = [(name, value) for name, value in headers if name not in marks]
    return marked + list(marks.items())


def _cut_size(size: int, cap: int) -> int:
    """Bytes of a value of `size` bytes once cut to `cap` bytes and a marker; it is only cut
    when that makes it shorter, so this never decreases as `cap` grows."""
    return min(size, cap + len(CUT_MARKER.format(size)))


def _cut_value(value: bytes, cap: int) -> bytes:
    if _cut_size(len(value), cap) == len(value):
        return value
    end = cap
    while end > 0 and value[end] & 0xC0 == 0x80:  # not inside a UTF-8 character
        end -= 1
    return value[:end] + CUT_MARKER.format(len(value)).encode()


def _cut_attributes(
    key: bytes | None, headers: list[tuple[str, bytes]], target: int
) -> tuple[bytes | None, list[tuple[str, bytes]]] | None:
    """The key and header values cut to one length, `ATTRIBUTE_CUT_BYTES` or less, the largest
    that keeps their bytes (names included) within `target`; None if cutting every one to its
    marker is not enough."""
    sizes = [len(key or b"")] + [len(value) for _, value in headers]
    names = sum(len(name.encode()) for name, _ in headers)

    def total(cap: int) -> int:
        return names + sum(_cut_size(size, cap) for size in sizes)

    if total(0) > target:
        return None
    low, high = 0, min(max(sizes), ATTRIBUTE_CUT_BYTES)  # total(low) fits; find the largest
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if total(middle) <= target else (low, middle - 1)
    cut_key = None if key is None else _cut_value(key, low)
    return cut_key, [(name, _cut_value(value, low)) for name, value in headers]


@dataclass
class _ReplayBatch:
    """Delivery outcomes of one batch taken from the spool, record by record."""

    expected: int
    settled: int = 0
    delivered: int = 0
    # By index in the batch: the error of a record Kafka refused, for good or for now.
    refused: dict[int, KafkaError] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.settled >= self.expected

    def on_delivery(self, index: int, error: KafkaError | None, _message: Message | None) -> None:
        self.settled += 1
        if error is None:
            self.delivered += 1
        else:
            self.refused[index] = error

    def committable(self) -> int:
        """How many records from the start of the batch are settled for good: delivered, or
        refused permanently (to be quarantined). The rest are sent again later."""
        if not self.done:
            return 0
        transient = [i for i, error in self.refused.items() if error.code() not in PERMANENT_ERRORS]
        return min(transient, default=self.expected)

    def stalled(self) -> bool:
        """Nothing delivered, and everything refused timed out in the producer."""
        return (
            not self.delivered
            and bool(self.refused)
            and all(error.code() == KafkaError._MSG_TIMED_OUT for error in self.refused.values())
        )

    def give_up_from(self, index: int, error: KafkaError) -> None:
        """Records from `index` on were not handed to the producer: they count as refused."""
        for unsent in range(index, self.expected):
            self.on_delivery(unsent, error, None)

    def first_error(self) -> str:
        """Why the batch could not be committed whole."""
        transient = [e for e in self.refused.values() if e.code() not in PERMANENT_ERRORS]
        return str(transient[0]) if transient else "no answer in time"


def _throttled(level: int, template: str) -> ThrottledLog:
    return ThrottledLog(log, level, template, DROP_LOG_INTERVAL_S)


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
        self._max_record_bytes = settings.max_record_bytes
        # `record_fit(...).fits` on the hot path, as one comparison: see `send`.
        self._fit_bytes = self._max_record_bytes - RECORD_OVERHEAD_BYTES
        self._budget_bytes = settings.buffer_max_bytes
        self._delivery_timeout_s = settings.delivery_timeout_ms / 1000
        self._metrics = metrics
        self._spool = spool
        self._producer_factory = producer_factory
        self._producer_settings = self._producer_config(settings)
        self._producer = producer_factory(self._producer_settings)
        self._stalled_replays = 0
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
        self._drop_log = _throttled(logging.ERROR, "dropped %(count)d event(s): %(reason)s")
        self._quarantine_log = _throttled(
            logging.ERROR, "quarantined %(count)d event(s): %(reason)s"
        )
        self._cut_log = _throttled(
            logging.WARNING, "cut %(count)d event(s) to fit message.max.bytes: %(reason)s"
        )
        self._replay_log = _throttled(
            logging.WARNING, "replay failed %(count)d time(s): %(reason)s"
        )
        self._client_log = ThrottledLogs(log, DROP_LOG_INTERVAL_S)
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

    def delivering(self) -> bool:
        """False while events cannot reach Kafka: it is unreachable, or replaying the spool
        fails; events then wait in the spool (or are dropped without one)."""
        return self._broker_up

    def send(self, record: KafkaRecord) -> None:
        size = record_size(record)
        if size + HEADER_OVERHEAD_BYTES * len(record.headers) > self._fit_bytes:
            fitted = self._cut(record, size)
            if fitted is None:
                return
            record, size = fitted, record_size(fitted)
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
                headers=record.headers,  # type: ignore[arg-type]  # a list of (str, bytes) pairs: produce takes it
                on_delivery=partial(self._on_delivery, record, size, time.perf_counter()),
            )
        except BufferError:
            self._to_spool(record)
            return
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if error.code() in PERMANENT_ERRORS:
                self._set_aside(
                    _spooled(self._topic, record), f"refused by the producer: {error}", error
                )
            else:  # e.g. the producer failed for now: the spool keeps it until it is back
                self._to_spool(record)
            return
        self._queued_bytes += size
        self._queued_events += 1

    def _cut(self, record: KafkaRecord, size: int) -> KafkaRecord | None:
        """`record` cut to fit message.max.bytes, or None when it cannot be (then set aside)."""
        fitted = cut_to_fit(record, self._max_record_bytes)
        reason = f"{size} bytes, above message.max.bytes={self._max_record_bytes}"
        if fitted is None:
            self._set_aside(
                _spooled(self._topic, record), f"{reason}, even with its attributes cut", None
            )
            return None
        self._metrics.cut.inc()
        self._cut_log.note(reason)
        return fitted

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
            self._set_aside(_spooled(self._topic, record), f"refused by Kafka: {error}", error)
            return
        if error.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
            self._mark_down(f"delivery failed: {error}")
        self._to_spool(record)

    def _on_client_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._mark_down(str(error))
        else:
            self._client_log.note(str(error.code()), logging.WARNING, f"kafka client: {error}")

    def _mark_down(self, reason: str) -> None:
        if self._broker_up:
            log.warning("kafka unreachable, spooling events to disk: %s", reason)
        self._broker_up = False
        self._next_probe = time.monotonic() + self._backoff_s

    def _to_spool(self, record: KafkaRecord) -> None:
        if self._spool is None:
            self._drop("kafka unavailable and no spool configured", "no_spool")
            return
        try:
            appended = self._spool.append(_spooled(self._topic, record))
        except ValueError:  # the spool is closed: only after shutdown
            appended = False
        if not appended:
            self._drop("spool full or closed", "spool_full")
            return
        self._metrics.spooled.inc()

    def _set_aside(self, record: SpooledRecord, reason: str, error: KafkaError | None) -> None:
        """Quarantine a record that can never be sent: kept, out of the way of the others."""
        label = error.name() if error is not None else "TOO_LARGE_TO_CUT"
        if self._spool is None:
            self._drop(f"{reason}; no spool to set it aside in", "refused")
            return
        try:
            kept = self._spool.quarantine(record, reason)
        except ValueError:  # the spool is closed: only after shutdown
            kept = False
        if not kept:
            self._drop(f"{reason}; no room to set it aside", "quarantine_full")
            return
        self._metrics.quarantined.labels(label).inc()
        self._quarantine_log.note(
            f"key {record.key[:64]!r}: {reason}; kept in {self._spool.directory}"
            if record.key is not None
            else f"{reason}; kept in {self._spool.directory}"
        )

    def _drop(self, reason: str, label: str) -> None:
        self._metrics.dropped.labels(label).inc()
        self._drop_log.note(reason)

    async def run(self) -> None:
        """Serve delivery callbacks and replay the spool until `close()`."""
        self._running = True
        try:
            while not self._closing:
                await self._send_deferred_in_slices()
                self._producer.poll(0)
                if self._spool is not None and self._spool.pending_records:
                    await self._replay_once()
                elif not self._broker_up:
                    await self._probe_while_idle()
                await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            self._run_finished.set()

    async def _probe_while_idle(self) -> None:
        """With nothing to replay, only a probe can tell that Kafka is back."""
        if time.monotonic() >= self._next_probe and await self._probe():
            log.info("kafka reachable again")
            self._broker_up = True
            self._backoff_s = 0.5

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
        for index, record in enumerate(batch):
            try:
                self._producer.produce(
                    record.topic,
                    record.value,
                    record.key,
                    headers=list(record.headers),
                    on_delivery=partial(outcome.on_delivery, index),
                )
            except BufferError:
                outcome.give_up_from(index, KafkaError(KafkaError._QUEUE_FULL))
                break
            except KafkaException as exception:
                error: KafkaError = exception.args[0]
                if error.code() not in PERMANENT_ERRORS:
                    outcome.give_up_from(index, error)
                    break
                outcome.on_delivery(index, error, None)  # this one only: the rest go on
        deadline = time.monotonic() + self._delivery_timeout_s + 5
        while not outcome.done and time.monotonic() < deadline and not self._closing:
            self.send_deferred()  # into the spool, behind the batch: calls go on meanwhile
            self._producer.poll(0)
            await asyncio.sleep(0.001)
        self._settle_replayed(batch, outcome)
        self._stalled_replays = self._stalled_replays + 1 if outcome.stalled() else 0
        if self._stalled_replays >= STALLED_REPLAYS_BEFORE_NEW_PRODUCER and not self._closing:
            await self._renew_producer()

    async def _renew_producer(self) -> None:
        """Replace a stuck producer; what it still holds comes back through the delivery
        callbacks as purged, served here on the loop's thread, and goes to the spool."""
        log.warning(
            "kafka answers but %d replays in a row timed out: starting a new producer",
            self._stalled_replays,
        )
        self._stalled_replays = 0
        retired = [self._producer]
        self._producer = self._producer_factory(self._producer_settings)
        retired[0].purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + RETIRED_PRODUCER_DRAIN_S
        while len(retired[0]) and time.monotonic() < deadline:
            retired[0].poll(0)
            await asyncio.sleep(0.01)
        # The last reference goes in a worker thread: librdkafka's teardown may take a while.
        await asyncio.get_running_loop().run_in_executor(None, retired.clear)

    def _settle_replayed(self, batch: list[SpooledRecord], outcome: _ReplayBatch) -> None:
        """Quarantine what Kafka refused for good and commit up to the first record that failed
        for now; that one and those after it are sent again later (duplicates keep their ids)."""
        assert self._spool is not None
        settled = outcome.committable()
        for index in sorted(i for i in outcome.refused if i < settled):
            error = outcome.refused[index]
            self._set_aside(batch[index], f"refused by Kafka on replay: {error}", error)
        self._spool.commit(settled)
        self._metrics.replayed.inc(settled - len([i for i in outcome.refused if i < settled]))
        if settled < len(batch):
            reason = f"replay failed: {outcome.first_error()}"
            self._replay_log.note(f"{reason}; {self._spool.pending_records} wait in the spool")
            self._mark_down(reason)
            self._backoff_s = min(MAX_BACKOFF_S, self._backoff_s * 2)
            self._next_probe = time.monotonic() + self._backoff_s
            return
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
