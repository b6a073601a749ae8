"""Outlier detectors fitted on a reference, scoring each instance of a window.

(Interface fixed for the other parts of the monitor; the implementation lands with the
detectors.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Method = Literal["robust_z", "mahalanobis", "isolation_forest"]


@dataclass(frozen=True)
class OutlierScores:
    columns: list[str]  # the numeric columns scored, in order
    scores: np.ndarray  # (n,) higher: more unusual
    threshold: float
    is_outlier: np.ndarray  # (n,) bool: score > threshold
    contributions: np.ndarray  # (n, len(columns)): each feature's part of the score


@dataclass(frozen=True)
class OutlierDetector:
    method: Method
    columns: list[str]
    threshold: float
    fpr: float

    def score(self, current: pd.DataFrame) -> OutlierScores:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> OutlierDetector:
        raise NotImplementedError


def fit(
    reference: pd.DataFrame, method: Method = "mahalanobis", fpr: float = 0.01, seed: int = 0
) -> OutlierDetector:
    raise NotImplementedError
