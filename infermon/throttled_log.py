"""Trouble that repeats (a broker or a database down) logged once every few seconds, counted.

A dependency that stays down makes every client retry many times a second; one line per retry
would bury everything else in the log. Each kind of trouble gets at most one line per interval,
saying how often it happened since the last line and the latest reason.
"""

from __future__ import annotations

import logging
import threading
import time

# "Once every few seconds": often enough to see an outage go on, rarely enough to read around.
DEFAULT_INTERVAL_S = 5.0
REPEATED_TEMPLATE = "%(reason)s (%(count)d time(s) since the last report)"


class ThrottledLog:
    """Logs one kind of trouble at most once per `interval_s`, with how often it happened since.

    Safe to call from any thread (librdkafka's callbacks, a writer thread, the event loop).
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        template: str,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        """`template` names `%(count)d`, how often since the last line, and `%(reason)s`, the
        latest reason, e.g. "dropped %(count)d event(s): %(reason)s"."""
        self._logger = logger
        self._level = level
        self._template = template
        self._interval_s = interval_s
        self._since_log = 0
        self._last_log = float("-inf")
        self._lock = threading.Lock()

    def note(self, reason: str) -> None:
        with self._lock:
            self._since_log += 1
            now = time.monotonic()
            if now - self._last_log < self._interval_s:
                return
            count, self._since_log, self._last_log = self._since_log, 0, now
        self._logger.log(self._level, self._template, {"count": count, "reason": reason})


class ThrottledLogs:
    """A `ThrottledLog` per kind, made on first use: `note(kind, level, message)`."""

    def __init__(self, logger: logging.Logger, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._kinds: dict[tuple[str, int], ThrottledLog] = {}
        self._lock = threading.Lock()

    def note(self, kind: str, level: int, message: str) -> None:
        with self._lock:
            throttled = self._kinds.get((kind, level))
            if throttled is None:
                throttled = ThrottledLog(self._logger, level, REPEATED_TEMPLATE, self._interval_s)
                self._kinds[kind, level] = throttled
        throttled.note(message)


class LibrdkafkaLog:
    """librdkafka's own log lines (its `logger` setting) through Python logging, warnings and
    errors throttled per facility: with the broker down it reports each failed connection."""

    def __init__(self, logger: logging.Logger, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._logger = logger
        self._throttled = ThrottledLogs(logger, interval_s)

    def log(self, level: int, fmt: str, *args: object) -> None:
        """Called by confluent-kafka as `log(level, "%s [%s] %s", facility, client, text)`."""
        if level < logging.WARNING or len(args) != 3:  # asked-for debug output is kept whole
            self._logger.log(level, fmt, *args)
            return
        facility, client, text = args
        self._throttled.note(str(facility), level, f"{facility} [{client}] {text}")
