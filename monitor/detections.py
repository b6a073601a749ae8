"""Detector results leave the monitor: CloudEvents on the detections topic and a webhook.

Nothing here blocks the caller: events are produced asynchronously and webhook calls are
retried in the background, so detection never slows storage. What cannot be sent (a full
queue, a broker away longer than the delivery timeout, a webhook that keeps failing) is
dropped, counted and logged at most once every few seconds.

Each drift report is one binary-mode CloudEvent whose JSON data is the report; each outlier
batch one whose data is `{"outliers": [...]}`. The id is the same whenever the same report is
sent again (`drift:<window id>:<revision>:<model>`), so a consumer recognises a re-emitted
report; the extensions `modelname`, `windowid`, `windowstart`, `windowend` and `revision` say
which model and window it is about, and the record key is the model, so one model's events
keep their order on one partition.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from prometheus_client import CollectorRegistry, Counter

from infermon.events import (
    EXT_MODEL_NAME,
    CloudEvent,
    KafkaRecord,
    check_writable,
    event_to_kafka,
    format_time,
)
from infermon.throttled_log import ThrottledLog, ThrottledLogs

log = logging.getLogger(__name__)

DRIFT_EVENT_TYPE = "org.kubeflow.serving.inference.drift"
OUTLIER_EVENT_TYPE = "org.kubeflow.serving.inference.outlier"
EXT_WINDOW_ID: Final = "windowid"
EXT_WINDOW_START: Final = "windowstart"
EXT_WINDOW_END: Final = "windowend"
EXT_REVISION: Final = "revision"
JSON_CONTENT_TYPE: Final = "application/json"

# A report a minute late is still worth having; one held longer is dropped, not piled up.
DELIVERY_TIMEOUT_MS = 60_000
MAX_QUEUED_EVENTS = 10_000
MAX_QUEUED_WEBHOOKS = 1_000
WEBHOOK_BACKOFF_S = 0.5
WEBHOOK_MAX_BACKOFF_S = 30.0
# How often the background thread serves Kafka's delivery reports.
POLL_INTERVAL_S = 0.2
# Answers worth retrying: the receiver is busy or timed out; any other 4xx will not change.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class DetectionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events_emitted = Counter(
            "infermon_monitor_detection_events_emitted",
            "drift and outlier CloudEvents Kafka took, by kind",
            ["kind"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "infermon_monitor_detection_events_dropped",
            "drift and outlier CloudEvents not sent, by reason (queue_full: the local queue was "
            "full; undelivered: Kafka did not take it in time; refused: by the producer, e.g. too "
            "large; unbuildable: not JSON; closed)",
            ["reason"],
            registry=registry,
        )
        self.webhooks_delivered = Counter(
            "infermon_monitor_webhooks_delivered",
            "drift state changes POSTed to a model's webhook",
            registry=registry,
        )
        self.webhooks_failed = Counter(
            "infermon_monitor_webhooks_failed",
            "drift state changes not delivered to a webhook, by reason (refused, "
            "unreachable: after every attempt; queue_full; closed)",
            ["reason"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class _Window:
    model: str
    window_id: int
    start: datetime
    end: datetime
    revision: int


@dataclass(frozen=True, slots=True)
class _WebhookCall:
    url: str
    body: bytes


class DetectionPublisher:
    def __init__(
        self,
        kafka_config: dict[str, Any],
        topic: str,
        source: str,
        webhook_timeout_s: float = 5.0,
        webhook_attempts: int = 5,
        *,
        registry: CollectorRegistry | None = None,
        max_queued_events: int = MAX_QUEUED_EVENTS,
        max_queued_webhooks: int = MAX_QUEUED_WEBHOOKS,
        webhook_backoff_s: float = WEBHOOK_BACKOFF_S,
    ) -> None:
        """`kafka_config` is librdkafka's (e.g. `KafkaSettings.kafka_client_config()`); its
        settings win over ours (`message.timeout.ms`: how long an event may wait for Kafka).
        The counters go to `registry`, the monitor's admin registry (else a private one)."""
        self._topic = topic
        self._source = source
        self.metrics = DetectionMetrics(registry if registry is not None else CollectorRegistry())
        self._drop_log = ThrottledLog(
            log, logging.WARNING, "dropped %(count)d detection event(s): %(reason)s"
        )
        self._webhook_log = ThrottledLog(
            log, logging.WARNING, "%(count)d webhook call(s) failed: %(reason)s"
        )
        self._client_log = ThrottledLogs(log)
        self._producer = Producer(
            {
                "linger.ms": 100,
                "compression.type": "lz4",
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "queue.buffering.max.messages": max_queued_events,
                "error_cb": self._on_client_error,
                **kafka_config,
            }
        )
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="detections-kafka", daemon=True)
        self._poller.start()
        self._webhooks = _WebhookSender(
            self.metrics, self._webhook_log, webhook_timeout_s, webhook_attempts,
            webhook_backoff_s, max_queued_webhooks,
        )  # fmt: skip

    def drift_report(
        self,
        model: str,
        window_id: int,
        window_start: datetime,
        window_end: datetime,
        revision: int,
        report: dict[str, Any],
        webhook: str | None,
        state_changed: bool,
    ) -> None:
        """One drift CloudEvent; and a webhook POST when `state_changed` and `webhook`."""
        window = _Window(model, window_id, window_start, window_end, revision)
        self._emit(DRIFT_EVENT_TYPE, "drift", window, report)
        if state_changed and webhook:
            self._webhooks.submit(webhook, lambda: _webhook_body(window, report))

    def outliers(
        self,
        model: str,
        window_id: int,
        window_start: datetime,
        window_end: datetime,
        outliers: list[dict[str, Any]],
        revision: int = 0,
    ) -> None:
        """One outlier CloudEvent for the window's batch, `{"outliers": [...]}`."""
        window = _Window(model, window_id, window_start, window_end, revision)
        self._emit(OUTLIER_EVENT_TYPE, "outlier", window, {"outliers": outliers})

    def close(self, timeout_s: float) -> None:
        """Waits up to `timeout_s` for Kafka and the webhooks to take what is queued; what is
        left then is dropped and counted."""
        if self._closed.is_set():
            return
        deadline = time.monotonic() + timeout_s
        self._webhooks.finish()
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        self._closed.set()
        self._poller.join()
        self._producer.purge()
        self._producer.poll(0)  # delivery reports of the purged events: counted as dropped
        self._webhooks.join(max(0.0, deadline - time.monotonic()))

    def _emit(self, event_type: str, kind: str, window: _Window, data: dict[str, Any]) -> None:
        if self._closed.is_set():
            self._drop("closed", f"{kind} event for {window.model!r} after close")
            return
        try:
            record = self._record(event_type, kind, window, data)
        except Exception as error:  # a report we cannot write must not stop the monitor
            self._drop("unbuildable", f"{kind} event for {window.model!r}: {error!r}")
            return
        try:
            self._producer.produce(
                self._topic, record.value, record.key,
                headers=record.headers,  # type: ignore[arg-type]  # a list of (str, bytes) pairs: produce takes it
                on_delivery=lambda error, message: self._on_delivery(kind, error, message),
            )  # fmt: skip
        except BufferError:
            self._drop("queue_full", "the queue for Kafka is full (is Kafka reachable?)")
        except KafkaException as error:  # too large for message.max.bytes, among others
            self._drop("refused", f"{kind} event for {window.model!r}: {error}")

    def _record(self, event_type: str, kind: str, window: _Window, data: Any) -> KafkaRecord:
        attributes: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"{kind}:{window.window_id}:{window.revision}:{window.model}",
            "source": self._source,
            "type": event_type,
            "time": datetime.now(UTC),
            "datacontenttype": JSON_CONTENT_TYPE,
            EXT_MODEL_NAME: window.model,
            EXT_WINDOW_ID: window.window_id,
            EXT_WINDOW_START: format_time(window.start),
            EXT_WINDOW_END: format_time(window.end),
            EXT_REVISION: window.revision,
        }
        event = check_writable(CloudEvent(attributes, orjson.dumps(data, option=_JSON_OPTIONS)))
        return event_to_kafka(event, window.model)

    def _on_delivery(self, kind: str, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.metrics.events_emitted.labels(kind).inc()
        elif error.code() in _PURGED:
            self._drop("closed", f"Kafka had not taken it when the monitor stopped: {error}")
        else:
            self._drop("undelivered", str(error))

    def _on_client_error(self, error: KafkaError) -> None:
        self._client_log.note(str(error.code()), logging.WARNING, f"detections: {error}")

    def _drop(self, reason: str, message: str) -> None:
        self.metrics.events_dropped.labels(reason).inc()
        self._drop_log.note(message)

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(POLL_INTERVAL_S)


def _webhook_body(window: _Window, report: dict[str, Any]) -> bytes:
    """What a webhook receives: which model and window, whether the dataset drifted, and the
    drifted features."""
    features = report.get("features") or []
    drifted = [f.get("column") for f in features if isinstance(f, dict) and f.get("drift")]
    body = {
        "model": window.model,
        "window": {
            "id": window.window_id,
            "start": format_time(window.start),
            "end": format_time(window.end),
            "revision": window.revision,
        },
        "dataset_drift": bool(report.get("dataset_drift")),
        "share": report.get("share"),
        "drifted_features": drifted,
    }
    return orjson.dumps(body, option=_JSON_OPTIONS)


class _WebhookSender:
    """POSTs in a background thread from a bounded queue, each retried with backoff."""

    def __init__(
        self,
        metrics: DetectionMetrics,
        failure_log: ThrottledLog,
        timeout_s: float,
        attempts: int,
        backoff_s: float,
        max_queued: int,
    ) -> None:
        self._metrics = metrics
        self._log = failure_log
        self._timeout_s = timeout_s
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._queue: queue.Queue[_WebhookCall] = queue.Queue(max_queued)
        self._finishing = threading.Event()  # close: send what is queued, then stop
        self._abandoned = threading.Event()  # close's time is up: stop retrying
        self._thread = threading.Thread(target=self._run, name="detections-webhook", daemon=True)
        self._thread.start()

    def submit(self, url: str, body: Callable[[], bytes]) -> None:
        """`body` builds the bytes, here, so that a bad report is caught and counted."""
        if self._finishing.is_set():
            self._fail("closed", f"{url}: after close")
            return
        try:
            self._queue.put_nowait(_WebhookCall(url, body()))
        except queue.Full:
            self._fail("queue_full", f"{url}: the webhook queue is full")
        except Exception as error:  # a report we cannot write must not stop the monitor
            self._fail("unbuildable", f"{url}: {error!r}")

    def finish(self) -> None:
        self._finishing.set()

    def join(self, timeout_s: float) -> None:
        self._finishing.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._abandoned.set()  # the thread counts what is left; a POST under way ends alone

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as client:
            while True:
                try:
                    call = self._queue.get(timeout=POLL_INTERVAL_S)
                except queue.Empty:
                    if self._finishing.is_set():
                        return
                    continue
                if self._abandoned.is_set():
                    self._fail("closed", f"{call.url}: not sent before the monitor stopped")
                else:
                    self._deliver(client, call)

    def _deliver(self, client: httpx.Client, call: _WebhookCall) -> None:
        delay = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            reason, retryable = self._post(client, call)
            if reason is None:
                self._metrics.webhooks_delivered.inc()
                return
            if not retryable or attempt == self._attempts or self._abandoned.wait(delay):
                break
            delay = min(delay * 2, WEBHOOK_MAX_BACKOFF_S)
        kind = "unreachable" if retryable else "refused"
        self._fail(kind, f"{call.url}: {reason} (attempt {attempt} of {self._attempts})")

    def _post(self, client: httpx.Client, call: _WebhookCall) -> tuple[str | None, bool]:
        """(None, _) when delivered, else (why, whether another attempt may succeed)."""
        try:
            response = client.post(
                call.url, content=call.body, headers={"content-type": JSON_CONTENT_TYPE}
            )
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}", True
        if response.is_success:
            return None, False
        status = response.status_code
        return f"answered {status}", status >= 500 or status in RETRYABLE_STATUSES

    def _fail(self, reason: str, message: str) -> None:
        self._metrics.webhooks_failed.labels(reason).inc()
        self._log.note(message)
