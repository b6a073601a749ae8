"""`infermon drift`: the real command in a child process for each kind of outcome (a table,
JSON, a bad file, an unknown column), the other cases through `infermon.cli.main` in-process
(the same code path after start-up, without paying for the imports each time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infermon.cli import main as cli_main
from tests.fixtures.processes import REPO_ROOT

FEATURE_KEYS = {
    "column", "kind", "test", "statistic", "p_value", "distance", "threshold",
    "threshold_source", "drift", "status", "reason", "missing_share",
    "reference_missing_share", "missing_drift", "unseen_categories", "histogram",
}  # fmt: skip


def infermon(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "infermon"  # the installed command
    command = [str(script)] if script.exists() else [sys.executable, "-m", "infermon.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
        check=False, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A reference and a current file in each format; `shifted` drifts, the others do not."""
    folder = tmp_path_factory.mktemp("drift")
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(
        {"steady": rng.normal(size=400), "shifted": rng.normal(size=400),
         "colour": rng.choice(["red", "blue"], 400)}
    )  # fmt: skip
    current = pd.DataFrame(
        {"steady": rng.normal(size=200), "shifted": rng.normal(3, 1, 200),
         "colour": rng.choice(["red", "blue"], 200)}
    )  # fmt: skip
    names = {"reference": "reference.csv", "current_parquet": "current.parquet",
             "current_jsonl": "current.jsonl", "extra": "extra.csv",
             "garbage": "garbage.parquet", "unknown_type": "reference.xlsx"}  # fmt: skip
    paths = {role: folder / name for role, name in names.items()}
    reference.to_csv(paths["reference"], index=False)
    current.to_parquet(paths["current_parquet"])
    current.to_json(paths["current_jsonl"], orient="records", lines=True)
    current.assign(surprise=1.0).to_csv(paths["extra"], index=False)
    paths["garbage"].write_bytes(b"this is not parquet")
    paths["unknown_type"].write_text("a\n1\n")
    return paths


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    message = result.stderr.strip()
    assert result.returncode == 2, message
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    for text in expected:
        assert text in message, message


def test_a_readable_table_by_default_and_drift_is_exit_0(files: dict[str, Path]) -> None:
    result = infermon(
        "drift", "--reference", str(files["reference"]), "--current", str(files["current_parquet"])
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "column",
        "kind",
        "test",
        "score",
        "threshold",
        "drift",
        "missing",
        "note",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows["shifted"][1:3] == ["numeric", "ks"] and rows["shifted"][5] == "DRIFT"
    assert rows["steady"][5] == "no" and rows["colour"][1:3] == ["categorical", "z"]
    assert "200 instances: no drift (1 of 3 columns tested drifted" in result.stdout


def test_json_is_a_list_with_one_object_per_column(files: dict[str, Path]) -> None:
    result = infermon(
        "drift", "--reference", str(files["reference"]), "--current", str(files["current_jsonl"]),
        "--json", "--test", "psi", "--threshold", "0.2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    features = json.loads(result.stdout)
    assert [f["column"] for f in features] == ["steady", "shifted", "colour"]
    for feature in features:
        assert set(feature) == FEATURE_KEYS
        assert (feature["test"], feature["threshold"], feature["threshold_source"]) == (
            "psi", 0.2, "configured",
        )  # fmt: skip
        assert feature["p_value"] is None and feature["distance"] is not None
    assert [f["drift"] for f in features] == [False, True, False]


def test_a_bad_file_is_one_line_and_exit_2(files: dict[str, Path]) -> None:
    current = files["garbage"]
    result = infermon("drift", "--reference", str(files["reference"]), "--current", str(current))
    assert_refused(result, f"--current {current}: cannot read it as Parquet")


def test_an_unknown_column_is_one_line_and_exit_2(files: dict[str, Path]) -> None:
    result = infermon(
        "drift", "--reference", str(files["reference"]), "--current", str(files["extra"])
    )
    assert_refused(result, "column 'surprise' of --current not in the reference")


# --- in-process ---


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main(["drift", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_p_value_test_for_numeric_columns_only_and_no_correction(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "--reference", str(files["reference"]), "--current", str(files["current_parquet"]),
        "--json", "--test", "anderson", "--correction", "none",
    )  # fmt: skip
    features = {f["column"]: f for f in json.loads(out)}
    assert code == 0
    assert features["shifted"]["test"] == "anderson" and features["colour"]["test"] == "z"
    assert {f["threshold"] for f in features.values()} == {0.05}


@pytest.mark.parametrize(
    ("current", "expected"),
    [("absent.csv", "no such file"), ("reference.xlsx", "unknown file type: name it .csv")],
)
def test_a_missing_file_or_an_unknown_type_is_refused(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], current: str, expected: str
) -> None:
    path = files["reference"].parent / current
    code, _, err = run(capsys, "--reference", str(files["reference"]), "--current", str(path))
    assert (
        code == 2
        and err.strip() == f"infermon drift: --current {path}: " + err.split(": ", 2)[2].strip()
    )
    assert expected in err and len(err.strip().splitlines()) == 1


def test_chosen_columns_must_be_in_the_reference(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = ["--reference", str(files["reference"]), "--current", str(files["extra"])]
    code, _, err = run(capsys, *paths, "--columns", "steady,nope")
    assert (code, err.strip()) == (
        2,
        "infermon drift: --columns: column 'nope' not in the reference",
    )
    code, out, _ = run(capsys, *paths, "--columns", "steady")
    assert code == 0 and out.splitlines()[1].startswith("steady") and "surprise" not in out


def test_an_unknown_test_names_the_known_ones(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "--reference", str(files["reference"]), "--current", str(files["reference"]),
        "--test", "nope",
    )  # fmt: skip
    assert code == 2 and "--test 'nope': unknown test: choose one of ks, chisquare" in err


def test_the_help_names_every_statistic_of_the_registry() -> None:
    from monitor.drift.statistics import STATISTICS
    from monitor.drift_command import TEST_NAMES

    assert tuple(STATISTICS) == TEST_NAMES
