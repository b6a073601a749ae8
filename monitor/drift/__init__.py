"""Drift statistics: pure code over numpy, scipy and pandas (no SQL, Kafka or HTTP).

Import the module you need; this package imports nothing itself:

- `columns`: column kinds (numeric, categorical), inferred from the reference.
- `summary`: one column on each side: the reference's `ColumnSketch` and a window's `Window`,
  with counts over the same bins.
- `statistics`: the registry, each statistic declared once (name, kind, column kinds,
  default threshold, minimum sample, function).
- `sketch`: a reference summarised once (`summarise`), stored as bytes, reused by every window.
- `calibration`: distance thresholds calibrated on the reference for a window size.
- `corrections`: none, Bonferroni, Benjamini-Hochberg over the p-value tests.
- `multivariate`: MMD with a permutation p-value.
- `report`: a window compared with a reference sketch (`compare`): a `DriftReport` of
  `FeatureDrift`s, never NaN, never an exception for what the data holds.
- `config`: `DriftConfig`, the choices a user makes (tests, thresholds, correction).
"""
