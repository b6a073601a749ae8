"""What a user chooses about drift for one model: tests, thresholds, correction, kinds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["numeric", "categorical"]
Correction = Literal["none", "bonferroni", "fdr"]
ThresholdMode = Literal["default", "calibrated"]
Multivariate = Literal["none", "mmd"]


@dataclass(frozen=True)
class DriftConfig:
    """Every field has the default a user gets with no configuration."""

    include: Sequence[str] | None = None  # columns to test; None: all
    exclude: Sequence[str] = ()
    kinds: Mapping[str, ColumnKind] = field(default_factory=dict)  # overrides the inferred kind
    tests: Mapping[str, str] = field(default_factory=dict)  # column -> statistic name
    numeric_test: str | None = None  # for every numeric column without its own; None: auto
    categorical_test: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)  # column -> threshold
    threshold: float | None = None  # for every column without its own; None: the test's default
    threshold_mode: ThresholdMode = "default"  # calibrated: distance thresholds from the reference
    correction: Correction = "bonferroni"
    drift_share: float = 0.5  # dataset drift when drifted / valid columns >= this
    n_bins: int = 10  # reference-quantile bins for the binned statistics
    multivariate: Multivariate = "none"
    mmd_sample: int = 300  # bounded subsample of each side for MMD
    mmd_permutations: int = 100
    seed: int = 0
    calibration_rounds: int = 50  # reference subsamples per calibrated threshold
    mmd_threshold: float = 0.05  # drift when the MMD permutation p-value is below this
    missing_threshold: float = 0.05  # the missing-share z-test's level, before the correction
