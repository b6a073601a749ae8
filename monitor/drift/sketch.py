"""A reference summarised once: sorted sample, bin edges and counts, categories and counts,
missing share, mean and covariance. Stored as bytes (no pickle), so a window costs only its
own data.

(Interface fixed for the other parts of the monitor; the implementation lands with the
statistics.)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from monitor.drift.config import ColumnKind, DriftConfig


@dataclass(frozen=True)
class ReferenceSketch:
    rows: int
    kinds: dict[str, ColumnKind]  # column -> kind, in the reference's column order

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceSketch:
        raise NotImplementedError


def summarise(
    reference: pd.DataFrame, config: DriftConfig, window_size: int | None = None
) -> ReferenceSketch:
    """`window_size`: the instances a window will hold, for thresholds calibrated on the
    reference (`config.threshold_mode == "calibrated"`)."""
    raise NotImplementedError
