"""`infermon monitor`: a consumer group member that stores payload events, effectively once.

The loop: poll a batch, decode and validate, copy poison records to the dead-letter topic,
write everything in one transaction, then store the offsets (auto-commit sends them).
The write runs in a background thread (`BatchWriter`) while the next batch is read and
decoded; offsets are stored in read order once each batch's transaction has committed.
A crash anywhere before the offsets are stored replays the batch, which the store
absorbs unchanged. A database outage pauses consumption and retries; nothing is skipped.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeGuard

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from infermon.admin import admin_app, embedded_server
from infermon.errors import UsageError, first_line
from infermon.excerpts import shortened
from infermon.settings import load_settings
from infermon.throttled_log import ThrottledLog, ThrottledLogs
from monitor.batch_writer import BatchWriter
from monitor.dead_letters import DeadLetterDeliveryError, DeadLetterTopic
from monitor.decode import KafkaMessage, dead_letter, decode
from monitor.metrics import MonitorMetrics
from monitor.one_pass import ONE_PASS_BUILT, prepare_records
from monitor.payloads import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_ROWS, DEFAULT_MAX_ROWS
from monitor.refusals import write_refusing
from monitor.settings import MonitorSettings
from monitor.store.records import DeadLetter, StoredEvent
from monitor.store.store import PreparedBatch, Store, StoreError, StoreUnavailableError

if TYPE_CHECKING:
    from monitor.detection_config import DetectionConfig

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
ORPHAN_SWEEP_INTERVAL_S = 10.0
RETENTION_INTERVAL_S = 3600.0
TRANSIENT_ERRORS = (StoreUnavailableError, DeadLetterDeliveryError)
WRITER_SWITCH_INTERVAL_S = 0.0001
EMPTY_BATCH = PreparedBatch(parts=[], events=0, inferences=0, instances=0)
# librdkafka reports which brokers it is connected to this often: the readiness check's delay.
BROKER_CHECK_INTERVAL_MS = 1000


class ShutdownDuringRetryError(Exception):
    """Asked to stop while the batch could not be written: its offsets stay unstored."""


@dataclass
class DecodedBatch:
    events: list[StoredEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    records: int = 0
    messages: Sequence[KafkaMessage] = ()  # as read: a refused event's dead letter is its record
    started: float = field(default_factory=time.perf_counter)
    prepared: PreparedBatch = EMPTY_BATCH  # the rows to write, by Store.prepare
    in_one_pass: bool = False  # rows made straight from the records: `events` left empty

    @classmethod
    def prepared_by(cls, store: Store, messages: Sequence[KafkaMessage], limits: BatchLimits
                    ) -> DecodedBatch:  # fmt: skip
        """The rows of the first records of `messages`, as many as `limits` allow (usually
        all: `records` says how many): in one pass when the store can, else record by record.
        """
        prepared = prepare_records(store, messages, limits.max_event_bytes, limits.max_rows,
                                   limits.max_batch_rows, limits.max_batch_bytes)  # fmt: skip
        if prepared is None:
            batch = cls.of(messages, limits.max_event_bytes, limits.max_rows,
                           limits.max_batch_rows, limits.max_batch_bytes)  # fmt: skip
            batch.prepare(store)
            return batch
        return cls(
            records=len(messages), messages=messages, next_offsets=next_offsets(messages),
            prepared=prepared, in_one_pass=True,
        )  # fmt: skip

    @classmethod
    def of(
        cls,
        messages: Sequence[KafkaMessage],
        max_event_bytes: int,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    ) -> DecodedBatch:
        """Each record decoded on its own, into events and dead letters, up to the record
        that brings the batch's rows to `max_batch_rows` or its bytes to `max_batch_bytes`
        (`records` says how many)."""
        events: list[StoredEvent] = []
        letters: list[DeadLetter] = []
        exploded = taken = size = 0
        for message in messages:
            taken += 1
            size += len(message.value() or b"")
            if size > max_batch_bytes and taken > 1:  # this one starts the next batch
                taken -= 1
                break
            try:
                decoded = decode(message, max_event_bytes, max_rows)
            except Exception as error:  # a decoder bug must not stop the consumer
                decoded = dead_letter(message, error, "decode")
            if isinstance(decoded, DeadLetter):
                letters.append(decoded)
                continue
            events.append(decoded)
            if decoded.rows:
                exploded += len(decoded.rows)
                if exploded >= max_batch_rows:
                    break
        read = messages[:taken] if taken < len(messages) else messages
        return cls(events, letters, next_offsets(read), taken, read)

    def prepare(self, store: Store) -> None:
        """The batch's rows; an event whose rows cannot be made is dead-lettered alone."""
        try:
            self.prepared = store.prepare(self.events, self.dead_letters)
            return
        except Exception:  # rare: find the events at fault, one by one
            log.exception("a batch's rows could not be made; trying its events one by one")
        kept: list[StoredEvent] = []
        for event in self.events:
            try:
                store.prepare([event])
            except Exception as error:
                self.dead_letters.append(self.letter_for(event, error, "prepare"))
            else:
                kept.append(event)
        try:
            self.prepared = store.prepare(kept, self.dead_letters)
        except Exception as error:  # they fail only together: keep them all as dead letters
            self.dead_letters += [self.letter_for(event, error, "prepare") for event in kept]
            kept = []
            self.prepared = store.prepare([], self.dead_letters)
        self.events = kept

    def letter_for(self, event: StoredEvent, error: Exception, stage: str) -> DeadLetter:
        """The dead letter of the record `event` was read from."""
        where = (event.topic, event.partition, event.offset)
        message = next(
            m for m in self.messages
            if (m.topic() or "", m.partition() or 0, m.offset() or 0) == where
        )  # fmt: skip
        return dead_letter(message, error, stage)

    def offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in self.next_offsets.items()]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one write batch may hold (MonitorSettings)."""

    max_event_bytes: int
    max_rows: int = DEFAULT_MAX_ROWS  # exploded from one payload
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS  # exploded from the batch's payloads
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES  # of the batch's records

    @classmethod
    def of(cls, settings: MonitorSettings) -> BatchLimits:
        return cls(settings.max_event_bytes, settings.max_instances_per_payload,
                   settings.batch_max_instances, settings.batch_max_bytes)  # fmt: skip


def next_offsets(messages: Sequence[KafkaMessage]) -> dict[tuple[str, int], int]:
    """Per partition, the offset after the batch's last record: the position to store."""
    offsets = {}
    for message in messages:  # a partition's records come in offset order
        offsets[message.topic() or "", message.partition() or 0] = (message.offset() or 0) + 1
    return offsets


class MonitorService:
    def __init__(
        self,
        settings: MonitorSettings,
        store: Store,
        metrics: MonitorMetrics,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        self._settings = settings
        self._store = store
        self._metrics = metrics
        self._stop = threading.Event()
        self._consumer = consumer_factory(self._consumer_config())
        self._dead_letter_topic = DeadLetterTopic(
            settings.dead_letter_topic, settings.kafka_client_config(), settings.dlq_max_bytes
        )
        self._limits = BatchLimits.of(settings)
        self._writer: BatchWriter[DecodedBatch] = BatchWriter(self._persist)
        self._next_orphan_sweep = 0.0
        self._next_purge = 0.0
        self._kafka_log = ThrottledLogs(log)
        self._store_log = ThrottledLog(
            log, logging.WARNING, "store unavailable, waiting and retrying "
            "(%(count)d failed attempt(s) since the last report): %(reason)s",
        )  # fmt: skip
        self.ready = False
        self.broker_reachable = False  # until librdkafka's statistics show a broker up

    def _consumer_config(self) -> dict[str, Any]:
        return self._settings.kafka_client_config(
            **{
                "group.id": self._settings.group,
                "enable.auto.offset.store": False,  # stored only after the database commits
                "enable.auto.commit": True,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self._settings.session_timeout_ms,
                # Eager, not cooperative-sticky: on the embedded broker (tansu) a member that
                # joins a cooperative group whose leader has left is never assigned anything.
                "partition.assignment.strategy": "range,roundrobin",
                "error_cb": self._on_kafka_error,
                "statistics.interval.ms": BROKER_CHECK_INTERVAL_MS,
                "stats_cb": self._on_statistics,
            }
        )

    def _on_kafka_error(self, error: KafkaError) -> None:
        self._kafka_log.note(f"kafka-{error.code()}", logging.WARNING, f"kafka: {error}")

    def _on_statistics(self, statistics_json: str) -> None:
        statistics = json.loads(statistics_json)
        brokers = statistics.get("brokers", {}).values()
        self.broker_reachable = any(broker.get("state") == "UP" for broker in brokers)
        self._metrics.set_consumer_lag(statistics)

    def is_ready(self) -> bool:
        """Consuming, with a broker connected: what /readyz answers."""
        return self.ready and self.broker_reachable

    def stop(self) -> None:
        self._stop.set()

    def wait_for_store(self) -> bool:
        """Migrates the store's schema, waiting and retrying while the database cannot be
        reached, as during a later outage; False if asked to stop meanwhile."""
        try:
            self._with_retry(self._store.upgrade)
        except ShutdownDuringRetryError:
            return False
        return True

    def run(self) -> None:
        self._consumer.subscribe([self._settings.topic], on_revoke=self._on_revoke)
        database = make_url(self._settings.database_url).render_as_string(hide_password=True)
        log.info("consuming %s as group %s into %s", self._settings.topic,
                 self._settings.group, database)  # fmt: skip
        if not ONE_PASS_BUILT:
            log.warning(
                "the compiled one-pass path was not built (no C compiler at install):"
                " every batch is decoded record by record, ~1.3x the CPU per event"
            )
        self.ready = True
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(
                    self._settings.batch_max_events, timeout=self._settings.batch_max_wait_ms / 1000
                )
                records = [m for m in messages if self._is_record(m)]
                if records:
                    self._handle(records)
                else:
                    self._finish_in_flight()  # quiet topic: store its offsets now
                self._housekeeping()
            self._finish_in_flight()
        except ShutdownDuringRetryError:
            log.warning("stopped while the store was unavailable; the batch will be read again")
        finally:
            self.ready = False
            self._close()

    def _is_record(self, message: Message) -> TypeGuard[KafkaMessage]:
        """A record, not an error event. (confluent_kafka types a Message's headers for
        producing too, with text values and dicts; a consumed record's are (str, bytes) pairs.)"""
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            self._kafka_log.note(f"consume-{error.code()}", logging.WARNING, f"consume: {error}")
        return False

    def _handle(self, messages: Sequence[KafkaMessage]) -> None:
        while messages:  # in more than one batch when its payloads explode into many rows
            batch = DecodedBatch.prepared_by(self._store, messages, self._limits)
            self._finish_in_flight()
            self._writer.submit(batch)
            messages = messages[batch.records :]

    def _finish_in_flight(self) -> None:
        """Waits for the batch being written, retries it here if the store was unavailable,
        then stores its offsets."""
        done = self._writer.collect()
        if done is None:
            return
        batch, error = done
        if isinstance(error, TRANSIENT_ERRORS):
            self._note_retry(error, 0.0)
            self._with_retry(lambda: self._persist(batch))
        elif isinstance(error, Exception):  # the store's refusal, or a bug a record set off
            log.error("the store refused a batch; finding the events it refuses: %s", error,
                      exc_info=None if isinstance(error, StoreError) else error)  # fmt: skip
            self._with_retry(lambda: self._persist_refusing(batch))
        elif error is not None:
            raise error
        self._store_offsets(batch)
        self._metrics.consumed.inc(batch.records)
        self._metrics.dead_lettered.inc(len(batch.dead_letters))
        self._metrics.batch_seconds.observe(time.perf_counter() - batch.started)

    def _store_offsets(self, batch: DecodedBatch) -> None:
        try:
            self._consumer.store_offsets(offsets=batch.offsets())
        except KafkaException as error:
            # A partition moved away while its batch waited for the store (a rebalance
            # during a retry): it is stored, and the new owner reads it again unchanged.
            log.warning("offsets not stored, partitions moved: %s", error)

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        """Before partitions move to another member: the batch in flight is stored and its
        offsets with it, or, if the store failed it, left for the new owner to read again."""
        done = self._writer.collect()
        if done is None:
            return
        batch, error = done
        if error is None:
            self._store_offsets(batch)
            self._metrics.consumed.inc(batch.records)
        elif isinstance(error, Exception):
            # Unavailable, or refused for good: either way not stored, so whoever reads these
            # partitions next reads the batch again (and dead-letters what is refused).
            log.warning("partitions revoked before the batch was stored; "
                        "it will be read again: %s", error)  # fmt: skip
        else:
            raise error

    def _persist(self, batch: DecodedBatch) -> None:
        if batch.dead_letters:
            self._send_dead_letters(batch.dead_letters)
        result = self._store.write_prepared(batch.prepared)
        self._metrics.stored.inc(result.events_new)
        self._metrics.duplicates.inc(result.duplicates)

    def _persist_refusing(self, batch: DecodedBatch) -> None:
        """The batch event by event where needed; what the store refuses is dead-lettered."""
        if batch.in_one_pass:  # its events are needed one by one now: every record of it
            limits = self._limits
            batch = DecodedBatch.of(batch.messages, limits.max_event_bytes, limits.max_rows,
                                    max_batch_rows=sys.maxsize,
                                    max_batch_bytes=sys.maxsize)  # fmt: skip
        results, refused = write_refusing(self._store, batch.events)
        letters = [batch.letter_for(event, error, "store") for event, error in refused]
        self._send_dead_letters(letters)  # the decoder's were sent already
        self._write_dead_letters([*batch.dead_letters, *letters])  # rolled back with the batch
        self._metrics.stored.inc(sum(result.events_new for result in results))
        self._metrics.duplicates.inc(sum(result.duplicates for result in results))
        self._metrics.dead_lettered.inc(len(letters))

    def _write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Into the store's table; one it refuses even alone is on the topic, and logged."""
        try:
            self._store.write([], letters)
            return
        except StoreUnavailableError:
            raise
        except Exception as error:
            log.error("the store refused dead letters; writing them one by one: %s", error)
        for letter in letters:
            try:
                self._store.write([], [letter])
            except StoreUnavailableError:
                raise
            except Exception as error:
                log.error("dead letter %s[%d]@%d not stored (it is on %s): %s", letter.topic,
                          letter.partition, letter.offset, self._dead_letter_topic.topic,
                          error)  # fmt: skip

    def _send_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        self._metrics.dead_letters_undelivered.inc(self._dead_letter_topic.send(letters))
        for letter in letters:
            log.warning("dead letter %s[%d]@%d: %s", letter.topic, letter.partition,
                        letter.offset, shortened(letter.error))  # fmt: skip

    def _with_retry(self, action: Callable[[], None]) -> None:
        """Run `action` until it succeeds; meanwhile consumption is paused, not abandoned."""
        backoff_s = 0.5
        paused: list[TopicPartition] = []
        retried = False
        while True:
            try:
                action()
                break
            except TRANSIENT_ERRORS as error:
                retried = True
                self._note_retry(error, backoff_s)
                if not paused:
                    paused = self._consumer.assignment()
                    self._consumer.pause(paused)
                self._wait(backoff_s)
                backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)
        if paused:
            self._consumer.resume(paused)
        if retried:
            log.info("store available again")

    def _note_retry(self, error: Exception, _backoff_s: float) -> None:
        self._metrics.retries.inc()
        self._store_log.note(first_line(error))

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise ShutdownDuringRetryError
            self._consumer.poll(0.1)  # paused: returns nothing, but keeps the membership alive

    def _housekeeping(self) -> None:
        now = time.monotonic()
        due = now >= self._next_orphan_sweep or (
            self._settings.retention_days and now >= self._next_purge
        )
        if due:
            self._finish_in_flight()  # one writer at a time: SQLite has a single write lock
        if now >= self._next_orphan_sweep:
            self._next_orphan_sweep = now + ORPHAN_SWEEP_INTERVAL_S
            gc.collect()  # the rare cycle: automatic collection is off (tune_garbage_collector)
            cutoff = datetime.now(UTC) - timedelta(seconds=self._settings.orphan_timeout_s)
            self._run_quietly(lambda: self._metrics.orphans.inc(self._store.mark_orphans(cutoff)))
        if self._settings.retention_days and now >= self._next_purge:
            self._next_purge = now + RETENTION_INTERVAL_S
            cutoff = datetime.now(UTC) - timedelta(days=self._settings.retention_days)
            self._run_quietly(lambda: self._metrics.purged.inc(self._store.purge(cutoff)))

    def _run_quietly(self, action: Callable[[], None]) -> None:
        try:
            action()
        except StoreUnavailableError as error:
            log.warning("housekeeping skipped, store unavailable: %s", error)

    def _close(self) -> None:
        self._writer.close()
        self._dead_letter_topic.close()
        try:
            self._consumer.commit(asynchronous=False)
        except Exception as error:  # nothing stored yet, or the group is gone: nothing to lose
            log.info("final commit skipped: %s", error)
        self._consumer.close()
        log.info("monitor stopped")


def tune_garbage_collector() -> None:
    """A batch is tens of thousands of small tuples, dicts and lists that live until it is
    stored; the collector would scan them again and again (~5 us of CPU per event with the
    default thresholds, still ~1 us with a threshold of 100,000). They hold no cycles, so
    reference counting frees them: the collector runs only in `_housekeeping`, every
    ORPHAN_SWEEP_INTERVAL_S, and what start-up built is kept out of its scans."""
    gc.freeze()
    gc.disable()


def main(argv: Sequence[str]) -> int:
    settings = load_settings(MonitorSettings, argv, "infermon monitor")
    logging.basicConfig(
        level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    store = open_store(settings.database_url)
    registry = CollectorRegistry()
    detection = None
    if settings.detection:
        # Imported only when detection is on: scipy and the detectors cost ~60 MB and ~1 s
        # that a monitor started with --no-detection does without.
        from monitor.evaluator import detection_config

        detection = detection_config(settings)  # a bad --config starts nothing
    return _serve(settings, store, registry, detection)


def _serve(settings: MonitorSettings, store: Store, registry: CollectorRegistry,
           detection: DetectionConfig | None) -> int:  # fmt: skip
    # Bound before the consumer starts: a port in use is refused at once, naming its flag.
    admin = (
        embedded_server(admin_app(registry, ready=lambda: service.is_ready()),
                        settings.admin_host, settings.admin_port)
        if settings.admin_port else None
    )  # fmt: skip
    service = MonitorService(settings, store, MonitorMetrics(registry))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop())
    if admin is not None:
        threading.Thread(target=admin.run, name="admin", daemon=True).start()
    try:
        if not service.wait_for_store():
            log.info("stopped while waiting for the database")
            return 0
    except StoreError as error:  # not transient: a schema from a newer infermon, say
        reason = first_line(error)
        raise UsageError(f"the database cannot be used: {reason}") from None
    tune_garbage_collector()
    # The writer thread needs the GIL back each time the database returns (a PostgreSQL
    # round trip, a SQLite statement), and the decoding thread yields it by default only
    # after 5 ms. A tenth of a millisecond keeps those waits from adding up (SQLite: 40k ->
    # 44-47k events/s against half a millisecond, BENCHMARKS.md).
    sys.setswitchinterval(WRITER_SWITCH_INTERVAL_S)
    if detection is None:
        log.info("drift detection off (--no-detection)")
        service.run()
        return 0
    from monitor.evaluator import detection_evaluator

    evaluator = detection_evaluator(settings, store, registry, detection)
    evaluator.start()  # beside the consumer, never on its write path
    try:
        service.run()
    finally:
        evaluator.stop()
    return 0


def open_store(database_url: str) -> Store:
    """The store at `database_url`; a SQLite folder that cannot be made is a `UsageError`."""
    try:
        return Store(database_url)
    except OSError as error:
        raise UsageError(
            f"cannot create the database's folder {error.filename} ({error.strerror}): "
            "choose another path in --database-url"
        ) from None
