"""The scoring methods, each fitted on an imputed reference matrix and scoring an imputed
window matrix: scores (higher: more unusual) and per-feature contributions (shares).

- `RobustZ`: z = 0.6745·(x - median)/MAD per feature; score √Σz².
- `Mahalanobis`: distance on the reference covariance of the standardised features, over the
  eigenvectors whose eigenvalue exceeds 1e-6 (a pseudo-inverse).
- `IsolationForest`: scikit-learn's forest (imported only when used), refitted from a stored
  bounded sample of the reference and the seed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from monitor.outliers.matrix import medians

# A value this many scales from the centre is as unusual as it gets: the cap keeps squares
# and sums finite for any float a window may hold.
Z_CAP = 1e6
MAD_TO_Z = 0.6745  # the MAD of a normal distribution is 0.6745 sigma
MEAN_AD_TO_SIGMA = 1.2533  # √(π/2): the mean absolute deviation of a normal is sigma·√(2/π)
# A constant reference column: its scale is this share of its magnitude (at least 1), so any
# visible change of the value scores as a very large z.
CONSTANT_RELATIVE_SCALE = 1e-9
EIGENVALUE_MIN = 1e-6  # Mahalanobis: directions with less variance (standardised) are dropped
FOREST_TREES = 100
FOREST_TREE_SAMPLES = 256  # rows per tree (at most the sample's rows)
FOREST_SAMPLE_ROWS = 2048  # the stored reference sample the forest is (re)fitted on
SKLEARN_HINT = "pip install 'infermon[sklearn]'"


class MissingExtraError(ImportError):
    """An optional dependency a chosen method needs is not installed."""


class Model(Protocol):
    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores (n,), contributions (n, d)) for an imputed matrix."""
        ...

    def arrays(self) -> dict[str, np.ndarray]:
        """What `model_from_arrays` needs to rebuild the model exactly."""
        ...


def shares(parts: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Each row's parts divided by its total; a row with total 0 (its parts all 0) stays 0."""
    return parts / np.where(total > 0, total, 1.0)[:, None]


@dataclass(frozen=True, eq=False)
class RobustZ:
    centre: np.ndarray  # (d,) reference medians
    scale: np.ndarray  # (d,) > 0: MAD / 0.6745, with fallbacks for a MAD of 0

    @classmethod
    def fit(cls, x: np.ndarray) -> RobustZ:
        centre = medians(x)
        deviation = np.abs(x - centre)
        scale = medians(deviation) / MAD_TO_Z
        # Over half the values equal: the mean absolute deviation, scaled to sigma the same way.
        no_mad = scale <= 0
        if no_mad.any():
            mean_deviation = deviation[:, no_mad].mean(axis=0)
            scale[no_mad] = mean_deviation * MEAN_AD_TO_SIGMA
        constant = scale <= 0
        scale[constant] = CONSTANT_RELATIVE_SCALE * np.maximum(np.abs(centre[constant]), 1.0)
        return cls(centre, scale)

    def z(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            z: np.ndarray = (x - self.centre) / self.scale
        np.clip(z, -Z_CAP, Z_CAP, out=z)
        return z

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = self.z(x)
        squares = np.square(z, out=z)
        total = squares.sum(axis=1)
        return np.sqrt(total), shares(squares, total)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"centre": self.centre, "scale": self.scale}


@dataclass(frozen=True, eq=False)
class Mahalanobis:
    mean: np.ndarray  # (d,)
    std: np.ndarray  # (d,) > 0; 1 for a constant column
    whitening: np.ndarray  # (d, k): kept eigenvectors / √eigenvalue, so Σ⁺ = W Wᵀ

    @classmethod
    def fit(cls, x: np.ndarray) -> Mahalanobis:
        mean = x.mean(axis=0)
        std = x.std(axis=0, ddof=1)
        std[~(std > 0)] = 1.0
        u = (x - mean) / std
        # Standardised first, so the eigenvalue cut does not depend on the columns' units.
        covariance = u.T @ u / (len(x) - 1)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        kept = eigenvalues > EIGENVALUE_MIN
        whitening = eigenvectors[:, kept] / np.sqrt(eigenvalues[kept])
        return cls(mean, std, whitening)

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore"):
            u = (x - self.mean) / self.std
        np.clip(u, -Z_CAP, Z_CAP, out=u)
        whitened = u @ self.whitening
        squared = np.einsum("ij,ij->i", whitened, whitened)
        # Feature j's term of uᵀΣ⁺u is u_j·(Σ⁺u)_j; the terms add up to the squared distance.
        terms = u * (whitened @ self.whitening.T)
        return np.sqrt(squared), shares(terms, squared)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "std": self.std, "whitening": self.whitening}


@dataclass(eq=False)
class IsolationForest:
    sample: np.ndarray  # (m, d) float32: the rows the forest is fitted on
    seed: int
    robust: RobustZ  # per-feature contributions
    _forest: Any = field(default=None, repr=False)

    @classmethod
    def fit(cls, x: np.ndarray, seed: int) -> IsolationForest:
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(x), size=min(len(x), FOREST_SAMPLE_ROWS), replace=False)
        # scikit-learn's trees split float32 values: storing float32 loses nothing.
        model = cls(x[np.sort(rows)].astype(np.float32), seed, RobustZ.fit(x))
        model.forest()  # fitted now, so a missing scikit-learn shows at fit time
        return model

    def forest(self) -> Any:
        """The fitted forest, built on first use (after `model_from_arrays`, on first score)."""
        if self._forest is None:
            ensemble = import_sklearn_ensemble()
            forest = ensemble.IsolationForest(
                n_estimators=FOREST_TREES,
                max_samples=min(FOREST_TREE_SAMPLES, len(self.sample)),
                random_state=self.seed,
            )
            self._forest = forest.fit(self.sample)
        return self._forest

    def score(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(x) == 0:  # scikit-learn refuses an empty matrix
            return np.zeros(0), np.zeros(x.shape)
        # Every split lies within the sample's range, so clipping to it changes no path,
        # and keeps any float a window may hold inside float32.
        inside = np.clip(x, self.sample.min(axis=0), self.sample.max(axis=0))
        scores = -self.forest().score_samples(inside.astype(np.float32))
        return np.asarray(scores, dtype=np.float64), self.robust.score(x)[1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sample": self.sample, **self.robust.arrays()}


def import_sklearn_ensemble() -> Any:
    try:
        return importlib.import_module("sklearn.ensemble")
    except ImportError:
        raise MissingExtraError(
            f"the isolation_forest outlier method needs scikit-learn: {SKLEARN_HINT}"
        ) from None


def fit_model(method: str, x: np.ndarray, seed: int) -> Model:
    if method == "robust_z":
        return RobustZ.fit(x)
    if method == "mahalanobis":
        return Mahalanobis.fit(x)
    return IsolationForest.fit(x, seed)


def model_from_arrays(method: str, arrays: dict[str, np.ndarray], seed: int) -> Model:
    if method == "robust_z":
        return RobustZ(arrays["centre"], arrays["scale"])
    if method == "mahalanobis":
        return Mahalanobis(arrays["mean"], arrays["std"], arrays["whitening"])
    robust = RobustZ(arrays["centre"], arrays["scale"])
    return IsolationForest(arrays["sample"], seed, robust)
