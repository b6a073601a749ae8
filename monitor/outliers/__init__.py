"""Outlier scores per instance against a reference: pure code over numpy and pandas.

- `detectors`: `fit` a detector on the reference (robust z-score, Mahalanobis, optionally
  IsolationForest when scikit-learn is installed), its threshold set from a target
  false-positive rate on the reference; `score` a window: scores, flags and per-feature
  contributions.
- `methods`: the scoring methods, each fitted on an imputed reference matrix.
- `matrix`: the numeric columns of a DataFrame as a float matrix, missing values imputed.
"""
