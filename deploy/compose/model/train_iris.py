"""Trains the compose stack's sample model, an iris classifier, into DIR/model.joblib.

Run in the model server's own image (kserve/sklearnserver), so the file is written by the
scikit-learn and joblib that load it. The iris data set ships inside scikit-learn: nothing is
downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def train(model_dir: Path) -> Path:
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "model.joblib"
    joblib.dump(model, path)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: train_iris.py MODEL_DIR")
    print(f"model written to {train(Path(sys.argv[1]))}")
