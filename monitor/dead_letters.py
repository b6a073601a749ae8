"""The dead-letter topic: poison records copied whole, with Kafka Connect-style error headers.

A copy that would not fit the topic (the producer refuses a record above its
`message.max.bytes`, 1,000,000 bytes by default, and a broker above its own limit) is cut to
fit: the value shortened, with its original size and sha256 in headers; original headers that
alone would not fit are left out. The store's `dead_letters` table keeps the record whole.
A dead letter the topic refuses for good is counted and logged, never retried: retrying would
stop the consumer on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from infermon.dead_letters import context_headers, headers_dropped_header, value_cut_headers
from monitor.store.records import DeadLetter

log = logging.getLogger(__name__)

# Kafka Connect's `connector.name` context header: the monitor's dead letters say it is theirs.
CONNECTOR_NAME = "infermon-monitor"
DELIVERY_TIMEOUT_S = 30.0
# The record's own framing: lengths and attributes, per record and per header (generous).
RECORD_OVERHEAD_BYTES = 128
HEADER_OVERHEAD_BYTES = 12
# Errors after which the same record will never be taken: counted, not retried.
_REFUSED_FOR_GOOD = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)


class DeadLetterDeliveryError(RuntimeError):
    """The dead-letter topic did not take every record: the batch must be retried."""


def error_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    return context_headers(
        letter.topic, letter.partition, letter.offset, CONNECTOR_NAME, letter.stage,
        letter.error_class, letter.error,
    )  # fmt: skip


def _headers_bytes(headers: Sequence[tuple[str, bytes | None]]) -> int:
    return sum(len(name) + len(value or b"") + HEADER_OVERHEAD_BYTES for name, value in headers)


@dataclass(frozen=True, slots=True)
class LetterRecord:
    """A dead letter as produced: within `max_bytes`."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def letter_record(letter: DeadLetter, max_bytes: int) -> LetterRecord:
    """The record to produce for `letter`: whole when it fits `max_bytes`, else cut to fit."""
    original = [(name, value or b"") for name, value in letter.headers]
    errors = error_headers(letter)
    key, value = letter.key, letter.value
    fixed = RECORD_OVERHEAD_BYTES + _headers_bytes(errors)
    size = fixed + len(key or b"") + len(value or b"") + _headers_bytes(original)
    if size <= max_bytes:
        return LetterRecord(key, value, original + errors)
    notes: list[tuple[str, bytes]] = []
    room = max_bytes - fixed - 4 * (HEADER_OVERHEAD_BYTES + 80)  # the notes below
    if key is not None and len(key) > room // 4:
        key = key[: room // 4]  # a key that large is junk; the table keeps it whole
    room -= len(key or b"")
    if _headers_bytes(original) > room // 2:
        notes.append(headers_dropped_header(_headers_bytes(original)))
        original = []
    room -= _headers_bytes(original)
    if value is not None and len(value) > room:
        notes += value_cut_headers(value, max(room, 0))
        value = value[: max(room, 0)]
    return LetterRecord(key, value, original + errors + notes)


class DeadLetterTopic:
    def __init__(self, topic: str, producer_config: dict[str, Any], max_bytes: int) -> None:
        self.topic = topic
        self._config = {**producer_config, "enable.idempotence": True}
        self._producer = Producer(self._config)
        self._max_bytes = max_bytes

    def send(self, letters: Sequence[DeadLetter]) -> int:
        """Copies each record and waits until Kafka has every one it will ever take; returns
        how many it refused for good (logged here). Raises DeadLetterDeliveryError when some
        may yet be taken: the caller retries the batch."""
        refused: list[str] = []
        transient: list[str] = []
        fatal: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is None:
                return
            if error.fatal():
                fatal.append(error)
            if error.code() in _REFUSED_FOR_GOOD and not error.fatal():
                refused.append(str(error))
            else:
                transient.append(str(error))

        for letter in letters:
            record = letter_record(letter, self._max_bytes)
            where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
            try:
                self._produce(record, delivered)
            except BufferError as error:  # the local queue stayed full: Kafka is not taking any
                transient.append(f"{where}: {error}")
            except (KafkaException, ValueError, TypeError) as error:  # too large, bad header
                refused.append(f"{where}: {error}")
        remaining = self._producer.flush(DELIVERY_TIMEOUT_S)
        if transient or remaining:
            if fatal:
                self._renew_producer()
            raise DeadLetterDeliveryError(
                f"{len(transient) + remaining} dead letter(s) not delivered: {transient[:1]}"
            )
        for reason in refused:
            log.error("dead letter refused by %s for good (kept in the store): %s",
                      self.topic, reason)  # fmt: skip
        return len(refused)

    def _produce(self, record: LetterRecord, delivered: Any) -> None:
        try:
            self._producer.produce(
                self.topic, record.value, record.key, on_delivery=delivered,
                headers=record.headers,  # type: ignore[arg-type]  # a list of (str, bytes) pairs: produce takes it
            )  # fmt: skip
        except BufferError:  # the local queue is full: let it drain once, then try again
            self._producer.flush(DELIVERY_TIMEOUT_S)
            self._producer.produce(
                self.topic, record.value, record.key, on_delivery=delivered,
                headers=record.headers,  # type: ignore[arg-type]  # a list of (str, bytes) pairs: produce takes it
            )  # fmt: skip

    def _renew_producer(self) -> None:
        """An idempotent producer that hit a fatal error takes nothing more: start afresh."""
        self._producer.flush(0)
        self._producer = Producer(self._config)

    def close(self) -> None:
        self._producer.flush(DELIVERY_TIMEOUT_S)
