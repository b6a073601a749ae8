"""Repeated trouble is logged once per interval per kind, with how often it happened since."""

from __future__ import annotations

import logging

import pytest

from infermon import throttled_log
from infermon.throttled_log import LibrdkafkaLog, ThrottledLog, ThrottledLogs

LOGGER = logging.getLogger("tests.throttled")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(throttled_log.time, "monotonic", fake)
    return fake


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_one_line_per_interval_with_the_count_since_the_last(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    throttled = ThrottledLog(LOGGER, logging.WARNING, "%(count)d failure(s): %(reason)s", 5.0)
    for attempt in range(40):  # forty failures in the first 4 s
        throttled.note(f"refused {attempt}")
        clock.now += 0.1
    clock.now += 1.0
    throttled.note("refused again")
    assert messages(caplog) == ["1 failure(s): refused 0", "40 failure(s): refused again"]


def test_kinds_are_throttled_apart(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    throttled = ThrottledLogs(LOGGER, 5.0)
    for _ in range(10):
        throttled.note("transport", logging.WARNING, "broker down")
        throttled.note("auth", logging.WARNING, "bad password")
    assert messages(caplog) == [
        "broker down (1 time(s) since the last report)",
        "bad password (1 time(s) since the last report)",
    ]


def test_librdkafka_warnings_are_throttled_and_debug_kept_whole(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    librdkafka = LibrdkafkaLog(LOGGER)
    for _ in range(25):  # as confluent-kafka calls it
        librdkafka.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "refused")
    librdkafka.log(logging.DEBUG, "%s [%s] %s", "BROKER", "rdkafka#consumer-1", "debug 1")
    librdkafka.log(logging.DEBUG, "%s [%s] %s", "BROKER", "rdkafka#consumer-1", "debug 2")
    assert messages(caplog) == [
        "FAIL [rdkafka#consumer-1] refused (1 time(s) since the last report)",
        "BROKER [rdkafka#consumer-1] debug 1",
        "BROKER [rdkafka#consumer-1] debug 2",
    ]
