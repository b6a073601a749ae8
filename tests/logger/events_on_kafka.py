"""Reading the logger's events back from Kafka in tests, as plain attribute dictionaries."""

from __future__ import annotations

import json
from dataclasses import dataclass

from confluent_kafka import Message

from infermon.events import CloudEvent, event_from_kafka
from tests.fixtures.broker import read_all, read_topic


@dataclass
class LoggedEvent:
    key: bytes | None
    headers: dict[str, bytes]
    value: bytes
    event: CloudEvent

    @property
    def type(self) -> str:
        return self.event.get_type()

    @property
    def id(self) -> str:
        return self.event.get_id()

    def ext(self, name: str) -> str | None:
        value = self.event.get_extension(name)
        return None if value is None else str(value)

    def json(self) -> object:
        return json.loads(self.value)


def as_logged(message: Message) -> LoggedEvent:
    headers = message.headers() or []
    return LoggedEvent(
        key=message.key(),
        headers={name: value or b"" for name, value in headers},
        value=message.value() or b"",
        event=event_from_kafka(headers, message.value()),
    )


def logged_events(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0
) -> list[LoggedEvent]:
    """The `expected` events, after checking that no further event follows them."""
    first = read_topic(bootstrap, topic, expected, timeout_s=timeout_s)
    assert len(first) == expected, f"{len(first)} of {expected} events arrived"
    everything = read_all(bootstrap, topic, idle_s=1.0)
    assert len(everything) == expected, f"{len(everything)} events, expected {expected}"
    return [as_logged(message) for message in everything]


def by_type(events: list[LoggedEvent]) -> dict[str, LoggedEvent]:
    return {event.type.rsplit(".", 1)[-1]: event for event in events}
