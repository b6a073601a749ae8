"""Drift detection inside `infermon monitor`: a background thread that evaluates each closed
window of each model once across the consumer group, beside the write path, never on it.

Every `poll_s` it takes over claims whose lease ran out (their monitor died), builds any
model's missing reference, then claims and evaluates each window that has closed (see
`window_bounds`). Every `late_check_s` it recounts the instances of the windows done in the
last day; a window that holds more than its report counted is claimed again and its report
revised (revision + 1, `late` = how many came late). The database decides who evaluates what
(`monitor.store.detection_write`), so any number of monitors may run this at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from monitor.detection_config import DetectionConfig, ModelDetection, load
from monitor.detections import DetectionPublisher
from monitor.evaluation import Evaluation, evaluate
from monitor.metrics import DriftMetrics
from monitor.references import (
    LoadedReference,
    ReferenceUnavailableError,
    pending_data,
    reference_data,
    reference_source,
    summarised,
    summarised_pending,
)
from monitor.settings import MonitorSettings
from monitor.store.detection_store import DetectionStore
from monitor.store.store import Store, StoreUnavailableError
from monitor.store.windows import DASHBOARD, Claim, Reference
from monitor.window_bounds import next_window

log = logging.getLogger(__name__)

# A reference that could not be built is tried again after this long.
REFERENCE_RETRY_S = 60.0


@dataclass(frozen=True)
class EvaluatorSettings:
    lease_s: float = 30.0  # a claim not finished by then may be taken over
    settle_s: float = 5.0  # a window closes once its newest instance is this old
    poll_s: float = 1.0
    late_check_s: float = 10.0
    late_horizon_s: float = 86_400.0  # windows done this recently are recounted
    late_windows: int = 500  # at most this many of them, the newest
    windows_per_pass: int = 50  # per model, so that one model's backlog does not starve others


def monitor_id() -> str:
    """This monitor in the claims it makes: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class DriftEvaluator:
    def __init__(
        self,
        store: DetectionStore,
        config: DetectionConfig,
        settings: EvaluatorSettings,
        *,
        metrics: DriftMetrics | None = None,
        publisher: DetectionPublisher | None = None,
        identity: str | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._settings = settings
        self._metrics = metrics
        self._publisher = publisher
        self._identity = identity or monitor_id()
        self._claims = itertools.count(1)
        self._loaded: dict[tuple[str, int], LoadedReference] = {}
        self._reference_retry: dict[str, float] = {}
        self._next_late_check = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="drift-evaluator", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops after the window in hand; a claim left unfinished is taken over later."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._publisher is not None:
            self._publisher.close(timeout_s)

    def _run(self) -> None:
        log.info("drift detection on, as %s", self._identity)
        while not self._stop.is_set():
            try:
                self.run_once()
            except StoreUnavailableError as error:
                log.warning("drift detection paused, store unavailable: %s", error)
            except Exception:  # a bug must not stop the monitor, nor detection for good
                log.exception("drift detection pass failed; trying again")
            self._stop.wait(self._settings.poll_s)

    def run_once(self) -> int:
        """One pass over every model; returns the windows evaluated."""
        evaluated = 0
        for window in self._store.expired_claims():
            claim = self._store.take_over(window, self._claim_id(), self._settings.lease_s)
            if claim is not None:
                log.info(
                    "took over window %d of %s (revision %d): its claim expired",
                    window.id,
                    window.model,
                    claim.revision,
                )
                evaluated += self._evaluate(claim)
        if time.monotonic() >= self._next_late_check:
            self._next_late_check = time.monotonic() + self._settings.late_check_s
            evaluated += self._revise_late()
        for model in self._store.models():
            if self._stop.is_set():
                break
            try:
                evaluated += self._advance(model)
            except StoreUnavailableError:
                raise
            except Exception:  # one model's bad data must not stop the others
                log.exception("drift detection failed for model %s", model)
        return evaluated

    def _claim_id(self) -> str:
        return f"{self._identity}#{next(self._claims)}"

    def _settled(self) -> datetime:
        return datetime.now(UTC) - timedelta(seconds=self._settings.settle_s)

    def _advance(self, model: str) -> int:
        detection = self._config.for_model(model)
        reference = self._reference(model, detection)
        if reference is None:
            return 0
        evaluated = 0
        for _ in range(self._settings.windows_per_pass):
            if self._stop.is_set():
                break
            last = self._store.last_window(model)
            bounds = next_window(
                self._store, model, detection.window, last, reference.last, self._settled()
            )
            if bounds is None:
                break
            claim = self._store.claim_new(
                model, bounds, reference.version, self._claim_id(), self._settings.lease_s
            )
            if claim is not None:  # else another monitor claimed it first: on to the next
                evaluated += self._evaluate(claim)
        return evaluated

    def _reference(self, model: str, detection: ModelDetection) -> Reference | None:
        """The model's newest reference, built and stored first if the configured one is not.
        One set from the dashboard stays the model's reference until another replaces it."""
        stored = self._store.reference(model)
        if stored is not None and stored.origin == DASHBOARD:
            return stored if not stored.pending else self._summarise_pending(stored, detection)
        if stored is not None and stored.source == reference_source(detection.reference):
            return stored
        if time.monotonic() < self._reference_retry.get(model, 0.0):
            return stored
        try:
            data = reference_data(self._store, model, detection.reference, self._settled())
            if data is None:  # not all stored yet
                return stored
            version = 1 if stored is None else stored.version + 1
            built = self._store.add_reference(summarised(model, version, detection, data))
        except ReferenceUnavailableError as error:
            self._reference_retry[model] = time.monotonic() + REFERENCE_RETRY_S
            log.warning("no reference for model %s yet: %s", model, error)
            return stored
        log.info(
            "reference %d of model %s: %s, %d rows", built.version, model, built.source, built.rows
        )
        return built

    def _summarise_pending(self, pending: Reference, detection: ModelDetection) -> Reference | None:
        """The dashboard's pending reference summarised and stored, before the model's next
        window; while that fails, the newest summarised one."""
        model = pending.model
        if time.monotonic() >= self._reference_retry.get(model, 0.0):
            try:
                data = pending_data(self._store, pending)
                built = self._store.complete_reference(summarised_pending(pending, detection, data))
            except (ReferenceUnavailableError, ValueError, TypeError) as error:
                # A user's data the statistics cannot take: tried again later, reported.
                self._reference_retry[model] = time.monotonic() + REFERENCE_RETRY_S
                log.warning("reference %d of model %s: %s", pending.version, model, error)
            else:
                log.info(
                    "reference %d of model %s summarised: %s, %d rows",
                    built.version, model, built.source, built.rows,
                )  # fmt: skip
                return built
        return self._store.reference(model, summarised_only=True)

    def _loaded_reference(self, model: str, version: int) -> LoadedReference:
        loaded = self._loaded.get((model, version))
        if loaded is None:
            stored = self._store.reference(model, version)
            if stored is None:
                raise LookupError(f"reference {version} of model {model!r} is not stored")
            loaded = self._loaded[model, version] = LoadedReference.of(stored)
        return loaded

    def _revise_late(self) -> int:
        since = datetime.now(UTC) - timedelta(seconds=self._settings.late_horizon_s)
        evaluated = 0
        for window in self._store.recently_done(since, self._settings.late_windows):
            stored = self._store.count_instances(window.bounds.instance_range(window.model))
            if stored <= (window.instances or 0):
                continue
            claim = self._store.reclaim(window, self._claim_id(), self._settings.lease_s)
            if claim is not None:
                evaluated += self._evaluate(claim)
        return evaluated

    def _evaluate(self, claim: Claim) -> int:
        """Evaluates and stores the claimed window: 1, or 0 if its claim was lost meanwhile."""
        window = claim.window
        started = time.perf_counter()
        reference = self._loaded_reference(window.model, window.reference_version)
        frame = self._store.instances(window.bounds.instance_range(window.model))
        evaluation = evaluate(frame, reference, self._config.for_model(window.model))
        report_id = self._store.finish(claim, evaluation.rows)
        if report_id is None:
            log.warning(
                "window %d of %s was taken over before its report was stored; the "
                "new claimer's report counts",
                window.id,
                window.model,
            )
            return 0
        seconds = time.perf_counter() - started
        rows = evaluation.rows
        log.info(
            "window %d of %s (%s #%d, revision %d): %d instances, dataset drift %s "
            "(share %.2f), %d outliers, %.0f ms",
            window.id,
            window.model,
            window.bounds.kind,
            window.bounds.seq,
            claim.revision,
            rows.instances,
            rows.dataset_drift,
            rows.share,
            len(rows.outliers),
            seconds * 1000,
        )
        if self._metrics is not None:
            self._metrics.windows_evaluated.labels(window.model).inc()
            self._metrics.dataset_drift.labels(window.model).set(float(rows.dataset_drift))
            self._metrics.drift_share.labels(window.model).set(rows.share)
            self._metrics.outliers.labels(window.model).inc(len(rows.outliers))
            self._metrics.window_seconds.observe(seconds)
        self._publish(claim, evaluation)
        return 1

    def _publish(self, claim: Claim, evaluation: Evaluation) -> None:
        if self._publisher is None:
            return
        window, rows = claim.window, evaluation.rows
        try:
            previous = self._store.previous_dataset_drift(window.model, window.bounds.seq)
            late = 0 if claim.revision == 1 else max(0, rows.instances - window.on_time)
            report: dict[str, Any] = {
                **evaluation.report.as_dict(),
                "model": window.model,
                "revision": claim.revision,
                "late": late,
                "reference_version": window.reference_version,
            }
            bounds = window.bounds
            self._publisher.drift_report(
                window.model,
                window.id,
                bounds.start,
                bounds.end,
                claim.revision,
                report,
                self._config.for_model(window.model).webhook,
                state_changed=rows.dataset_drift != bool(previous),
            )
            if rows.outliers:
                outliers = [{**o, "time": o["time"].isoformat()} for o in rows.outliers]
                self._publisher.outliers(
                    window.model,
                    window.id,
                    bounds.start,
                    bounds.end,
                    outliers,
                    revision=claim.revision,
                )
        except Exception:  # the report is stored; its event is a copy, never worth a crash
            log.exception(
                "the report of window %d of %s was not published", window.id, window.model
            )


def detection_config(settings: MonitorSettings) -> DetectionConfig | None:
    """The detection config `settings` ask for; None with --no-detection. A bad --config
    file is a UsageError: read before anything starts, so that a mistake starts nothing."""
    if not settings.detection:
        return None
    return load(Path(settings.config)) if settings.config else DetectionConfig()


def detection_evaluator(
    settings: MonitorSettings, store: Store, registry: CollectorRegistry, config: DetectionConfig
) -> DriftEvaluator:
    """The evaluator, with its publisher (a Kafka producer); not started yet."""
    identity = monitor_id()
    publisher = DetectionPublisher(
        settings.kafka_client_config(), settings.detections_topic,
        source=f"infermon-monitor/{identity}", registry=registry,
    )  # fmt: skip
    return DriftEvaluator(
        DetectionStore(store), config,
        EvaluatorSettings(
            lease_s=settings.window_lease_s, settle_s=settings.window_settle_s,
            poll_s=settings.detection_poll_s, late_check_s=settings.window_late_check_s,
        ),
        metrics=DriftMetrics(registry), publisher=publisher, identity=identity,
    )  # fmt: skip
