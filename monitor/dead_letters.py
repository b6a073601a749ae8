"""The dead-letter topic: poison records copied whole, with Kafka Connect-style error headers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from monitor.records import DeadLetter

# Kafka Connect's DLQ context headers (errors.deadletterqueue.context.headers.enable).
HEADER_PREFIX = "__connect.errors."
CONNECTOR_NAME = "infermon-monitor"
DELIVERY_TIMEOUT_S = 30.0


class DeadLetterDeliveryError(RuntimeError):
    """The dead-letter topic did not take every record: the batch must be retried."""


def error_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    fields = {
        "topic": letter.topic,
        "partition": str(letter.partition),
        "offset": str(letter.offset),
        "connector.name": CONNECTOR_NAME,
        "stage": letter.stage,
        "exception.class.name": letter.error_class,
        "exception.message": letter.error,
    }
    return [(HEADER_PREFIX + name, value.encode()) for name, value in fields.items()]


class DeadLetterTopic:
    def __init__(self, topic: str, producer_config: dict[str, Any]) -> None:
        self.topic = topic
        self._producer = Producer({**producer_config, "enable.idempotence": True})

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Copies each record and waits until Kafka has every one of them."""
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(str(error))

        for letter in letters:
            original = [(name, value or b"") for name, value in letter.headers]
            self._producer.produce(
                self.topic,
                letter.value,
                letter.key,
                headers=original + error_headers(letter),
                on_delivery=delivered,
            )
        remaining = self._producer.flush(DELIVERY_TIMEOUT_S)
        if failures or remaining:
            raise DeadLetterDeliveryError(
                f"{len(failures) + remaining} dead letter(s) not delivered: {failures[:1]}"
            )

    def close(self) -> None:
        self._producer.flush(DELIVERY_TIMEOUT_S)
