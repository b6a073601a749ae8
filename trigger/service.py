"""The trigger's loop: read requests, call the model, answer, and commit only what is answered.

In a paragraph: a reader task polls batches of input records and queues each behind the earlier
records of its key; `--concurrency` workers take records key by key, call the model (retrying
timeouts, broken connections and 5xx with backoff) and produce the answer, or the input to the
dead-letter topic. Each delivery report finishes its input; per partition, the offset after the
contiguous prefix of finished inputs is stored, and librdkafka's auto-commit commits it. So an
input is committed only after its answer is in Kafka: a crash repeats answers (same id and key),
it never loses one. Payload events go to the log topic through the logger's sink.

Everything runs on the event loop's thread: delivery reports and rebalance callbacks fire inside
`poll()` and `consume()`, which only the loop calls, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from infermon.throttled_log import ThrottledLogs
from logger.producer.capture import EventBuilder
from logger.producer.sink import PERMANENT_ERRORS, EventSink
from trigger.inputs import (
    InferenceRequest,
    InvalidInputError,
    read_request,
    record_headers,
    record_position,
)
from trigger.kafka_clients import consumer_config, producer_config
from trigger.keyed_queue import KeyedQueue
from trigger.metrics import TriggerMetrics
from trigger.model_client import ModelAnswer, ModelCallError, ModelClient, ModelTimeoutError
from trigger.offsets import PartitionOffsets
from trigger.outputs import AnswerEncoder, Failure, Outcome, call_record, dead_letter_headers
from trigger.settings import TriggerSettings

log = logging.getLogger(__name__)

CONSUME_BATCH = 500
# An idle reader looks for records this often: the most it adds to an answer's latency.
IDLE_POLL_S = 0.005
# With --max-open-records open, the reader takes one record this often. Pausing partitions
# instead throws away librdkafka's prefetched records, and refetching them halved throughput.
POLL_WHEN_FULL_S = 0.1
MAX_BACKOFF_S = 30.0
REDELIVERY_DELAY_S = 1.0
WARNING_INTERVAL_S = 10.0


class _AbandonedError(Exception):
    """Stopping, or the partition was revoked, during a retry: the next owner answers it."""


@dataclass(slots=True, eq=False)
class _Pending:
    """An input record from the moment it is read until its answer or dead letter is in Kafka."""

    message: Message
    offsets: PartitionOffsets
    read_at: float
    finished: bool = False


@dataclass(slots=True, eq=False)
class _Delivery:
    pending: _Pending
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]
    label: str  # the status code of an answer, the reason of a dead letter
    dead_letter: bool


class Trigger:
    def __init__(
        self,
        settings: TriggerSettings,
        client: ModelClient,
        metrics: TriggerMetrics,
        payload_log: tuple[EventBuilder, EventSink] | None,
    ) -> None:
        self._settings = settings
        self._client = client
        self._metrics = metrics
        self._payload_log = payload_log
        self._answers = AnswerEncoder(settings.event_source)
        self._queue: KeyedQueue[_Pending] = KeyedQueue()
        self._partitions: dict[int, PartitionOffsets] = {}
        self._to_store: set[PartitionOffsets] = set()
        self._open = 0
        self._closed = False
        self._stopping = asyncio.Event()
        self.failure: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._warnings = ThrottledLogs(log, WARNING_INTERVAL_S)
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer = Consumer(consumer_config(settings, self._on_client_error))
        self._producer = Producer(producer_config(settings, self._on_client_error))
        metrics.in_flight.set_function(lambda: self._open)

    def start(self) -> None:
        self._consumer.subscribe(
            [self._settings.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._tasks = [asyncio.create_task(self._read())]
        self._tasks += [
            asyncio.create_task(self._work()) for _ in range(self._settings.concurrency)
        ]

    # --- reading ---
    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll_when_full = 0.0
        try:
            while not self._stopping.is_set():
                self._producer.poll(0)
                self._store_offsets()
                room = self._settings.max_open_records - self._open
                records: list[Message] = []
                if room > 0 or loop.time() >= next_poll_when_full:
                    # Full, records are still taken one at a time: consume() is what serves
                    # the group's callbacks and keeps this member in the group.
                    records = self._consumer.consume(min(CONSUME_BATCH, max(room, 1)), timeout=0)
                    next_poll_when_full = loop.time() + POLL_WHEN_FULL_S
                for record in records:
                    self._accept(record)
                await asyncio.sleep(0 if len(records) == CONSUME_BATCH else IDLE_POLL_S)
        except Exception as error:
            log.exception("the reader failed")
            self._fail(f"reader failed: {error!r}")

    def _accept(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            self._on_client_error(error)
            return
        partition, offset = record_position(message)
        offsets = self._partitions.get(partition)
        if offsets is None:
            return  # a late record of a partition no longer ours
        offsets.read(offset)
        self._open += 1
        self._metrics.consumed.inc()
        key = message.key()
        # Records without a key promise no order, so each is its own key.
        queue_key: Hashable = (partition, key) if key is not None else (None, offset)
        self._queue.put(queue_key, _Pending(message, offsets, time.perf_counter()))

    # --- working ---
    async def _work(self) -> None:
        while True:
            key, pending = await self._queue.get()
            try:
                if pending.offsets.revoked:
                    self._abandon(pending)
                else:
                    await self._handle(pending)
            except _AbandonedError:
                self._abandon(pending)
            except Exception as error:  # a bug costs one record, not the worker
                log.exception("handling offset %d failed", pending.message.offset())
                self._dead_letter(pending, Failure("trigger", "internal_error", repr(error)))
            finally:
                self._queue.done(key)

    async def _handle(self, pending: _Pending) -> None:
        message, settings = pending.message, self._settings
        try:
            request = read_request(
                record_headers(message), message.value(), *record_position(message),
                settings.model_name, settings.protocol,
            )  # fmt: skip
        except InvalidInputError as error:
            self._dead_letter(pending, Failure("decode", "invalid_input", str(error)))
            return
        outcome = await self._infer(request, pending.offsets)
        if self._payload_log is not None:
            builder, sink = self._payload_log
            call = call_record(outcome, settings.max_payload_bytes)
            sink.send(builder.request_event(call))
            sink.send(builder.response_event(call))
        if pending.offsets.revoked:
            self._abandon(pending)  # the partition's new owner answers it
        elif outcome.failure is not None:
            self._dead_letter(pending, outcome.failure)
        elif outcome.answer is not None:
            record = self._answers.encode(outcome, outcome.answer, message.key())
            status = str(outcome.answer.status)
            self._send(
                _Delivery(pending, settings.output_topic, record.key, record.value,
                          record.headers, status, dead_letter=False)
            )  # fmt: skip

    async def _infer(self, request: InferenceRequest, partition: PartitionOffsets) -> Outcome:
        """Calls the model until it answers below 500 or the retries are spent."""
        received_at = datetime.now(UTC)
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            answer: ModelAnswer | None = None
            failure: Failure | None = None
            try:
                answer = await self._client.post(
                    request.path, request.body, request.content_type, request.id
                )
            except ModelCallError as error:
                reason = "timeout" if isinstance(error, ModelTimeoutError) else "unreachable"
                failure = Failure("inference", reason, str(error), attempt, error.status)
            else:
                if answer.status >= 500:
                    message = f"the model server answered {answer.status}"
                    failure = Failure("inference", "status_5xx", message, attempt, answer.status)
            latency_s = time.perf_counter() - started
            self._metrics.model_latency.observe(latency_s)
            if failure is None or attempt > self._settings.max_retries:
                return Outcome(request, received_at, attempt, latency_s, answer, failure)
            self._metrics.retried.labels(failure.reason).inc()
            log.debug("%s: attempt %d failed (%s); retrying", request.id, attempt, failure.message)
            await self._backoff(attempt)
            if partition.revoked:
                raise _AbandonedError

    async def _backoff(self, attempt: int) -> None:
        delay_s = min(MAX_BACKOFF_S, self._settings.retry_backoff_s * 2 ** (attempt - 1))
        try:
            await asyncio.wait_for(self._stopping.wait(), delay_s)
        except TimeoutError:
            return  # the full delay passed: try again
        raise _AbandonedError

    def _dead_letter(self, pending: _Pending, failure: Failure) -> None:
        self._warn(
            failure.reason,
            f"dead-lettering offset {pending.message.offset()} of partition "
            f"{pending.message.partition()}: {failure.message}",
        )
        message = pending.message
        headers = dead_letter_headers(message, self._settings.group, failure)
        self._send(
            _Delivery(pending, self._settings.dead_letter_topic, message.key(), message.value(),
                      headers, failure.reason, dead_letter=True)
        )  # fmt: skip

    # --- producing and delivery reports ---
    def _send(self, delivery: _Delivery) -> None:
        if self._closed:
            return  # after shutdown: the record stays uncommitted for the next owner
        while True:
            try:
                self._producer.produce(
                    delivery.topic, delivery.value, delivery.key,
                    headers=delivery.headers,  # type: ignore[arg-type]  # a list of (str, bytes | None) pairs: produce takes it
                    on_delivery=partial(self._on_delivery, delivery),
                )  # fmt: skip
                return
            except BufferError:
                self._producer.poll(0.01)  # the local queue is full: serve reports, try again
            except KafkaException as error:
                self._on_delivery(delivery, error.args[0], None)
                return

    def _on_delivery(self, delivery: _Delivery, error: KafkaError | None, _: Any) -> None:
        pending = delivery.pending
        if error is None:
            if delivery.dead_letter:
                self._metrics.dead_lettered.labels(delivery.label).inc()
            else:
                self._metrics.answered.labels(delivery.label).inc()
                self._metrics.latency.observe(time.perf_counter() - pending.read_at)
            self._finish(pending)
        elif pending.offsets.revoked:
            self._abandon(pending)  # the partition's new owner answers it
        elif error.code() in PERMANENT_ERRORS and not delivery.dead_letter:
            message = f"the output topic refused the answer: {error}"
            self._dead_letter(pending, Failure("produce", "output_refused", message))
        else:
            self._warn("delivery", f"delivery to {delivery.topic} failed, retrying: {error}")
            asyncio.get_running_loop().call_later(REDELIVERY_DELAY_S, self._send, delivery)

    def _finish(self, pending: _Pending) -> None:
        if pending.finished:
            return
        pending.finished = True
        self._open -= 1
        offsets = pending.offsets
        if offsets.finish(record_position(pending.message)[1]) and not offsets.revoked:
            self._to_store.add(offsets)

    def _abandon(self, pending: _Pending) -> None:
        """Forgets a record without finishing it: its offset is never committed by us."""
        if not pending.finished:
            pending.finished = True
            self._open -= 1

    def _store_offsets(self) -> None:
        if not self._to_store:
            return
        offsets = [
            TopicPartition(p.topic, p.partition, p.commit_offset)
            for p in self._to_store
            if not p.revoked and p.commit_offset is not None
        ]
        self._to_store.clear()
        if offsets:
            try:
                self._consumer.store_offsets(offsets=offsets)
            except KafkaException as error:  # revoked meanwhile: the new owner redoes them
                log.debug("storing offsets %s: %s", offsets, error)

    # --- the consumer group ---
    def _on_assign(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions[tp.partition] = PartitionOffsets(tp.topic, tp.partition)
        log.info("assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._store_offsets()
        with contextlib.suppress(KafkaException):  # nothing stored to commit
            consumer.commit(asynchronous=False)
        self._release(partitions)
        log.info("partitions %s revoked", sorted(tp.partition for tp in partitions))

    def _on_lost(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self._release(partitions)
        log.warning("partitions %s lost", sorted(tp.partition for tp in partitions))

    def _release(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            offsets = self._partitions.pop(tp.partition, None)
            if offsets is not None:
                offsets.revoked = True
        for pending in self._queue.drop(lambda p: p.offsets.revoked):
            self._abandon(pending)

    # --- errors and shutdown ---
    def _on_client_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fail(f"fatal Kafka client error: {error}")
        elif error.code() != KafkaError._PARTITION_EOF:
            self._warn(f"kafka-{error.code()}", f"kafka client: {error}")

    def _fail(self, reason: str) -> None:
        if not self.failure.done():
            self.failure.set_result(reason)

    def _warn(self, kind: str, message: str) -> None:
        """One line per kind of trouble every WARNING_INTERVAL_S, with how often since."""
        self._warnings.note(kind, logging.WARNING, message)

    async def stop(self, timeout_s: float) -> None:
        """Stop reading; let calls in progress finish; deliver; commit; leave the group."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self._stopping.set()
        reader, workers = self._tasks[0], self._tasks[1:]
        await reader
        queued = self._queue.drop(lambda _: True)
        for pending in queued:
            self._abandon(pending)
        while self._queue.busy and loop.time() < deadline - timeout_s / 2:
            await asyncio.sleep(0.01)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        while len(self._producer) and loop.time() < deadline:
            self._producer.poll(0)
            await asyncio.sleep(0.01)
        self._closed = True
        self._store_offsets()
        self._consumer.close()  # commits the stored offsets
        self._client.close()
        log.info(
            "trigger stopped; %d queued and %d unfinished record(s) left for the next owner",
            len(queued), self._open,
        )  # fmt: skip
