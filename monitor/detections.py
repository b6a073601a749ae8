"""Detector results leave the monitor: CloudEvents on the detections topic and a webhook.

(Interface fixed for the other parts of the monitor; the implementation lands with it.)
Nothing here blocks the caller: events are produced asynchronously and webhook calls are
retried in the background, so detection never slows storage.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

DRIFT_EVENT_TYPE = "org.kubeflow.serving.inference.drift"
OUTLIER_EVENT_TYPE = "org.kubeflow.serving.inference.outlier"


class DetectionPublisher:
    def __init__(
        self,
        kafka_config: dict[str, Any],
        topic: str,
        source: str,
        webhook_timeout_s: float = 5.0,
        webhook_attempts: int = 5,
    ) -> None:
        raise NotImplementedError

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
        raise NotImplementedError

    def outliers(
        self,
        model: str,
        window_id: int,
        window_start: datetime,
        window_end: datetime,
        outliers: list[dict[str, Any]],
    ) -> None:
        raise NotImplementedError

    def close(self, timeout_s: float) -> None:
        raise NotImplementedError
