"""`infermon monitor --config FILE`: each form parses to its dataclasses; each mistake is one
line naming the key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infermon.errors import UsageError
from monitor.detection_config import (
    DetectionConfig,
    ModelDetection,
    ReferenceSpec,
    WindowSpec,
    load,
)
from monitor.drift.config import DriftConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detection.yaml"
    path.write_text(text)
    return path


def test_an_empty_file_is_every_default(tmp_path: Path) -> None:
    assert load(write(tmp_path, "")) == DetectionConfig()
    assert load(write(tmp_path, "defaults:\nmodels:\n")) == DetectionConfig()


def test_a_full_model_entry(tmp_path: Path) -> None:
    config = load(
        write(
            tmp_path,
            """
models:
  my-model:
    features: {include: [a, b, c, 0], exclude: [d]}
    kinds: {c: categorical, 0: numeric}
    tests: {a: ks, b: psi}
    numeric_test: wasserstein
    categorical_test: chisquare
    thresholds: {a: 0.01, b: 2}
    threshold: 0.1
    threshold_mode: calibrated
    correction: fdr
    drift_share: 0.25
    n_bins: 20
    multivariate: mmd
    mmd_sample: 200
    mmd_permutations: 50
    seed: 7
    outliers: {method: robust_z, fpr: 0.05}
    webhook: https://example.com/hook
""",
        )
    )
    expected_drift = DriftConfig(
        include=["a", "b", "c", "0"],
        exclude=["d"],
        kinds={"c": "categorical", "0": "numeric"},
        tests={"a": "ks", "b": "psi"},
        numeric_test="wasserstein",
        categorical_test="chisquare",
        thresholds={"a": 0.01, "b": 2.0},
        threshold=0.1,
        threshold_mode="calibrated",
        correction="fdr",
        drift_share=0.25,
        n_bins=20,
        multivariate="mmd",
        mmd_sample=200,
        mmd_permutations=50,
        seed=7,
    )
    assert config.for_model("my-model") == ModelDetection(
        drift=expected_drift,
        outliers="robust_z",
        outlier_fpr=0.05,
        webhook="https://example.com/hook",
    )
    assert config.for_model("another") == ModelDetection()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{first: 250}", ReferenceSpec(kind="first", instances=250)),
        (
            "{start: 2026-01-01T00:00:00Z, end: '2026-01-02T00:00:00+02:00'}",
            ReferenceSpec(
                kind="range",
                start=datetime(2026, 1, 1, tzinfo=UTC),
                end=datetime(2026, 1, 1, 22, tzinfo=UTC),
            ),
        ),
    ],
)
def test_reference_forms(tmp_path: Path, text: str, expected: ReferenceSpec) -> None:
    config = load(write(tmp_path, f"defaults:\n  reference: {text}\n"))
    assert config.default.reference == expected


def test_a_reference_file_is_read_from_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "ref.parquet").write_bytes(b"")
    config = load(write(tmp_path, "models:\n  m:\n    reference: {file: ref.parquet}\n"))
    assert config.for_model("m").reference == ReferenceSpec(
        kind="file", path=tmp_path / "ref.parquet"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{instances: 500}", WindowSpec(kind="count", instances=500)),
        ("{tumbling: 10m}", WindowSpec(kind="tumbling", length=timedelta(minutes=10))),
        ("{tumbling: 1h30m}", WindowSpec(kind="tumbling", length=timedelta(minutes=90))),
        (
            "{sliding: 1h, step: 30s}",
            WindowSpec(kind="sliding", length=timedelta(hours=1), step=timedelta(seconds=30)),
        ),
    ],
)
def test_window_forms(tmp_path: Path, text: str, expected: WindowSpec) -> None:
    assert load(write(tmp_path, f"defaults:\n  window: {text}\n")).default.window == expected


def test_a_model_starts_from_the_defaults_and_replaces_what_it_sets(tmp_path: Path) -> None:
    config = load(
        write(
            tmp_path,
            """
defaults:
  window: {tumbling: 5m}
  correction: none
  outliers: none
models:
  a: {correction: fdr}
  b:
""",
        )
    )
    assert config.default.outliers is None
    a = config.for_model("a")
    assert (a.window.length, a.drift.correction, a.outliers) == (timedelta(minutes=5), "fdr", None)
    assert config.for_model("b") == config.default
    assert config.for_model("unlisted") == config.default


@pytest.mark.parametrize("off", ["none", "null", "false"])
def test_outliers_off(tmp_path: Path, off: str) -> None:
    assert load(write(tmp_path, f"defaults:\n  outliers: {off}\n")).default.outliers is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models:\n  m:\n    window: {tumbling: 10 parsecs}",
            'models.m.window.tumbling: "10 parsecs" is not a duration like 30s, 10m, 1h',
        ),
        ("models:\n  m:\n    windw: {instances: 5}", "models.m.windw: unknown key (known: "),
        ("bogus: 1", "bogus: unknown key (known: defaults, models)"),
        ("models:\n  m:\n    window: {instances: -5}", "models.m.window.instances: -5 is below 1"),
        ("models:\n  m:\n    window: {instances: 1.5}", "models.m.window.instances: 1.5 is not"),
        ("models:\n  m:\n    window: {instances: true}", "models.m.window.instances: True is not"),
        ("models:\n  m:\n    window: {tumbling: 0s}", "models.m.window.tumbling: "),
        ("models:\n  m:\n    window: {tumbling: 30}", "models.m.window.tumbling: 30 is not a dur"),
        ("models:\n  m:\n    window: {sliding: 1m, step: 2m}", "models.m.window.step: "),
        ("models:\n  m:\n    window: {sliding: 1h}", "models.m.window: give one of"),
        ("models:\n  m:\n    window: {instances: 5, tumbling: 1m}", "models.m.window: give one"),
        ("models:\n  m:\n    reference: {first: 0}", "models.m.reference.first: 0 is below 1"),
        ("models:\n  m:\n    reference: {file: gone.csv}", 'models.m.reference.file: "gone.csv": '),
        ("models:\n  m:\n    reference: {file: ref.xlsx}", "models.m.reference.file: "),
        (
            "models:\n  m:\n    reference: {start: 2026-01-02T00:00:00Z, end: 2026-01-01T00:00Z}",
            "models.m.reference.end: ",
        ),
        (
            "models:\n  m:\n    reference: {start: 2026-01-01 00:00:00, end: 2026-01-02T00:00:00Z}",
            "models.m.reference.start: 2026-01-01T00:00:00 has no UTC offset",
        ),
        ("models:\n  m:\n    reference: {start: yesterday, end: now}", "models.m.reference.start"),
        ("models:\n  m:\n    correction: fdrr", 'models.m.correction: "fdrr" is not one of none'),
        ("models:\n  m:\n    tests: {a: kss}", 'models.m.tests.a: "kss" is not one of ks, '),
        ("defaults:\n  numeric_test: t", 'defaults.numeric_test: "t" is not one of'),
        ("models:\n  m:\n    kinds: {a: text}", 'models.m.kinds.a: "text" is not one of'),
        ("models:\n  m:\n    thresholds: {a: -1}", "models.m.thresholds.a: -1 is not above 0"),
        ("models:\n  m:\n    threshold: .nan", "models.m.threshold: nan is not a number"),
        ("models:\n  m:\n    drift_share: 1.5", "models.m.drift_share: 1.5 is not above 0"),
        ("models:\n  m:\n    multivariate: pca", 'models.m.multivariate: "pca" is not one of'),
        ("models:\n  m:\n    n_bins: 1", "models.m.n_bins: 1 is below 2"),
        ("models:\n  m:\n    outliers: {method: lof}", 'models.m.outliers.method: "lof" is not'),
        ("models:\n  m:\n    outliers: {fpr: 1}", "models.m.outliers.fpr: 1 is not between 0"),
        ("models:\n  m:\n    outliers: {methd: x}", "models.m.outliers.methd: unknown key"),
        ("models:\n  m:\n    webhook: ftp://x/y", 'models.m.webhook: "ftp://x/y" is not an http'),
        ("models:\n  m:\n    features: {include: a}", 'models.m.features.include: "a" is not a'),
        ("models:\n  m:\n    features: {include: [a], exclude: [a]}", "models.m.features: a both"),
        ("models:\n  m: 5", "models.m: 5 is not a mapping"),
        ("models: [a, b]", "models: ['a', 'b'] is not a mapping"),
        ("[1, 2]", "(the file): [1, 2] is not a mapping"),
        ("models:\n  m: {}\n  m: {}", "not valid YAML: line 3, column 3: key 'm' appears twice"),
        ("models: {m: [}", "not valid YAML: line 1"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "ref.xlsx").write_bytes(b"")
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as raised:
        load(path)
    text = str(raised.value)
    assert text.startswith(f"--config {path}: {message}"), text
    assert "\n" not in text


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^--config .*nowhere\.yaml: no such file$"):
        load(tmp_path / "nowhere.yaml")
