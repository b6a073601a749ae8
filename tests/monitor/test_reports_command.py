"""`infermon reports` through the real command: a table, JSON with the drift keys, and a
missing database refused with exit code 2, never created."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from infermon import cli
from monitor.detection_config import DetectionConfig, ModelDetection, ReferenceSpec, WindowSpec
from monitor.evaluator import DriftEvaluator, EvaluatorSettings
from monitor.store.detection_store import DetectionStore
from monitor.store.schema import instances
from monitor.store.store import Store
from tests.fixtures.processes import REPO_ROOT
from tests.monitor.detection_data import instance_rows

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REPORT_KEYS = {"model", "window_start", "window_end", "instances", "dataset_drift", "share",
               "revision", "late", "features"}  # fmt: skip
FEATURE_KEYS = {"column", "kind", "test", "statistic", "p_value", "distance", "threshold",
                "drift", "missing_share", "unseen_categories"}  # fmt: skip


def infermon(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "infermon.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """The command through `infermon`'s entry point in this process: (exit code, stdout)."""

    def command(*args: str) -> tuple[int, str]:
        code = cli.main(list(args))
        return code, capsys.readouterr().out

    return command


@pytest.fixture
def evaluated(store: Store) -> Store:
    """Two models' windows evaluated: `m` with a shifted second window, `n` without."""
    rows = instance_rows("m", T0, 400, seed=1)
    rows += instance_rows("m", T0 + (rows[-1]["time"] - T0) * 2, 200, seed=2, prefix="s",
                          shifted=frozenset({"a"}))  # fmt: skip
    rows += instance_rows("n", T0, 400, seed=3, prefix="n")
    with store.write_transaction() as connection:
        connection.execute(insert(instances), rows)
    small = ModelDetection(reference=ReferenceSpec(instances=200), window=WindowSpec(instances=200))
    DriftEvaluator(DetectionStore(store), DetectionConfig(default=small),
                   EvaluatorSettings(settle_s=0.0)).run_once()  # fmt: skip
    return store


def test_json_lists_reports_latest_first_with_the_drift_keys(
    evaluated: Store, database_url: str, run: Callable[..., tuple[int, str]]
) -> None:
    code, out = run("reports", "--database-url", database_url, "--model", "m", "--json")

    assert code == 0
    found = json.loads(out)
    assert [set(report) for report in found] == [REPORT_KEYS] * 2
    assert [report["model"] for report in found] == ["m", "m"]
    assert found[0]["window_start"] > found[1]["window_start"]  # latest first
    assert found[0]["window_start"].endswith("Z")
    assert [f["column"] for f in found[0]["features"] if f["drift"]] == ["a", "prediction"]
    assert all(set(feature) >= FEATURE_KEYS for feature in found[0]["features"])
    assert (found[1]["instances"], found[1]["revision"], found[1]["late"]) == (200, 1, 0)
    code, out = run("reports", "--database-url", database_url, "--limit", "2", "--json")
    assert (code, len(json.loads(out))) == (0, 2)
    everything = json.loads(run("reports", "--database-url", database_url, "--json")[1])
    assert sorted(report["model"] for report in everything) == ["m", "m", "n"]


def test_the_table_shows_each_report_and_its_features(evaluated: Store, database_url: str
                                                      ) -> None:  # fmt: skip
    done = infermon("reports", "--database-url", database_url, "--model", "m")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("m  ") and "revision 1" in lines[0] and "200 instances" in lines[0]
    assert lines[1].split()[:3] == ["column", "kind", "test"]
    assert [line.split()[0] for line in lines[2:7]] == ["a", "b", "c", "colour", "prediction"]
    assert lines[2].split()[-1] == "True"  # a drifted in the latest window


def test_a_missing_database_is_exit_2_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"

    done = infermon("reports", "--database-url", f"sqlite:///{missing}")

    assert done.returncode == 2
    assert "no database at" in done.stderr and "Traceback" not in done.stderr
    assert not missing.exists()


def test_a_database_without_reports_says_so(
    database_url: str, run: Callable[..., tuple[int, str]]
) -> None:
    with Store(database_url) as store:
        store.upgrade()

    code, out = run("reports", "--database-url", database_url)

    assert (code, out.strip()) == (0, "no drift reports stored")
