"""`infermon monitor`: a consumer group member that stores payload events, effectively once.

The loop: poll a batch, decode and validate, copy poison records to the dead-letter topic,
write everything in one transaction, then store the offsets (auto-commit sends them).
A crash anywhere before the offsets are stored replays the batch, which the store
absorbs unchanged. A database outage pauses consumption and retries; nothing is skipped.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from infermon.admin import admin_app, embedded_server
from infermon.settings import load_settings
from monitor.dead_letters import DeadLetterDeliveryError, DeadLetterTopic
from monitor.decode import dead_letter, decode
from monitor.metrics import MonitorMetrics
from monitor.records import DeadLetter, StoredEvent
from monitor.settings import MonitorSettings
from monitor.store import Store, StoreUnavailableError

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
ORPHAN_SWEEP_INTERVAL_S = 10.0
RETENTION_INTERVAL_S = 3600.0
TRANSIENT_ERRORS = (StoreUnavailableError, DeadLetterDeliveryError)


class ShutdownDuringRetryError(Exception):
    """Asked to stop while the batch could not be written: its offsets stay unstored."""


@dataclass
class DecodedBatch:
    events: list[StoredEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    @classmethod
    def of(cls, messages: Sequence[Message], max_event_bytes: int) -> DecodedBatch:
        batch = cls()
        for message in messages:
            try:
                decoded = decode(message, max_event_bytes)
            except Exception as error:  # a decoder bug must not stop the consumer
                decoded = dead_letter(message, error, "decode")
            if isinstance(decoded, DeadLetter):
                batch.dead_letters.append(decoded)
            else:
                batch.events.append(decoded)
            key = (message.topic() or "", message.partition() or 0)
            batch.next_offsets[key] = max(batch.next_offsets.get(key, 0), message.offset() + 1)
        return batch

    def offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in self.next_offsets.items()]


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
            settings.dead_letter_topic, settings.kafka_client_config()
        )
        self._next_orphan_sweep = 0.0
        self._next_purge = 0.0
        self.ready = False

    def _consumer_config(self) -> dict[str, Any]:
        return self._settings.kafka_client_config(
            **{
                "group.id": self._settings.group,
                "enable.auto.offset.store": False,  # stored only after the database commits
                "enable.auto.commit": True,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self._settings.session_timeout_ms,
                "partition.assignment.strategy": "cooperative-sticky",
                "error_cb": lambda error: log.warning("kafka: %s", error),
            }
        )

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self._consumer.subscribe([self._settings.topic])
        database = make_url(self._settings.database_url).render_as_string(hide_password=True)
        log.info("consuming %s as group %s into %s", self._settings.topic,
                 self._settings.group, database)  # fmt: skip
        self.ready = True
        try:
            while not self._stop.is_set():
                messages = self._consumer.consume(
                    self._settings.batch_max_events, timeout=self._settings.batch_max_wait_ms / 1000
                )
                records = [m for m in messages if self._is_record(m)]
                if records:
                    self._handle(records)
                self._housekeeping()
        except ShutdownDuringRetryError:
            log.warning("stopped while the store was unavailable; the batch will be read again")
        finally:
            self.ready = False
            self._close()

    def _is_record(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consume: %s", error)
        return False

    def _handle(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        batch = DecodedBatch.of(messages, self._settings.max_event_bytes)
        self._with_retry(lambda: self._persist(batch))
        self._consumer.store_offsets(offsets=batch.offsets())
        self._metrics.consumed.inc(len(messages))
        self._metrics.dead_lettered.inc(len(batch.dead_letters))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)

    def _persist(self, batch: DecodedBatch) -> None:
        if batch.dead_letters:
            self._dead_letter_topic.send(batch.dead_letters)
            for letter in batch.dead_letters:
                log.warning("dead letter %s[%d]@%d: %s", letter.topic, letter.partition,
                            letter.offset, letter.error)  # fmt: skip
        result = self._store.write(batch.events, batch.dead_letters)
        self._metrics.stored.inc(result.events_new)
        self._metrics.duplicates.inc(result.duplicates)

    def _with_retry(self, action: Callable[[], None]) -> None:
        """Run `action` until it succeeds; meanwhile consumption is paused, not abandoned."""
        backoff_s = 0.5
        paused: list[TopicPartition] = []
        while True:
            try:
                action()
                break
            except TRANSIENT_ERRORS as error:
                self._metrics.retries.inc()
                log.warning("store unavailable, retrying in %.1f s: %s", backoff_s, error)
                if not paused:
                    paused = self._consumer.assignment()
                    self._consumer.pause(paused)
                self._wait(backoff_s)
                backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)
        if paused:
            self._consumer.resume(paused)
            log.info("store available again")

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stop.is_set():
                raise ShutdownDuringRetryError
            self._consumer.poll(0.1)  # paused: returns nothing, but keeps the membership alive

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_orphan_sweep:
            self._next_orphan_sweep = now + ORPHAN_SWEEP_INTERVAL_S
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
        self._dead_letter_topic.close()
        try:
            self._consumer.commit(asynchronous=False)
        except Exception as error:  # nothing stored yet, or the group is gone: nothing to lose
            log.info("final commit skipped: %s", error)
        self._consumer.close()
        log.info("monitor stopped")


def main(argv: Sequence[str]) -> int:
    settings = load_settings(MonitorSettings, argv, "infermon monitor")
    logging.basicConfig(
        level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    store = Store(settings.database_url)
    store.upgrade()
    registry = CollectorRegistry()
    service = MonitorService(settings, store, MonitorMetrics(registry))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: service.stop())
    if settings.admin_port:
        admin = embedded_server(
            admin_app(registry, ready=lambda: service.ready),
            settings.admin_host,
            settings.admin_port,
        )
        threading.Thread(target=admin.run, name="admin", daemon=True).start()
    service.run()
    return 0
