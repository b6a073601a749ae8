"""Per-model detection settings: `infermon monitor --config FILE` (YAML), else the defaults.

(Interface fixed for the other parts of the monitor; `load` lands with the YAML file.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from monitor.drift.config import DriftConfig
from monitor.outliers.detectors import Method

DEFAULT_REFERENCE_INSTANCES = 1000
DEFAULT_WINDOW_INSTANCES = 1000


@dataclass(frozen=True)
class ReferenceSpec:
    """Where a model's reference comes from, when none is stored yet."""

    kind: Literal["first", "file", "range"] = "first"
    instances: int = DEFAULT_REFERENCE_INSTANCES  # kind "first": the model's first N instances
    path: Path | None = None  # kind "file": CSV, Parquet or JSON lines
    start: datetime | None = None  # kind "range": stored instances in [start, end)
    end: datetime | None = None


@dataclass(frozen=True)
class WindowSpec:
    kind: Literal["count", "tumbling", "sliding"] = "count"
    instances: int = DEFAULT_WINDOW_INSTANCES  # kind "count": every N instances
    length: timedelta | None = None  # time windows
    step: timedelta | None = None  # sliding windows: a new window every step


@dataclass(frozen=True)
class ModelDetection:
    reference: ReferenceSpec = field(default_factory=ReferenceSpec)
    window: WindowSpec = field(default_factory=WindowSpec)
    drift: DriftConfig = field(default_factory=DriftConfig)
    outliers: Method | None = "mahalanobis"  # None: no outlier scoring
    outlier_fpr: float = 0.01
    webhook: str | None = None  # POSTed when the model's drift state changes


@dataclass(frozen=True)
class DetectionConfig:
    default: ModelDetection = field(default_factory=ModelDetection)
    models: dict[str, ModelDetection] = field(default_factory=dict)

    def for_model(self, model: str) -> ModelDetection:
        return self.models.get(model, self.default)


def load(path: Path) -> DetectionConfig:
    """The YAML file; a mistake in it is an `infermon.errors.UsageError` naming the key."""
    raise NotImplementedError
