"""`infermon demo`: the sample model's routes, its drifting data, and the whole demo run.

The run uses the virtual environment the tests run in, not a fresh one: building one with
`pip install .[demo]` (compiling the monitor's Cython module, fetching scikit-learn, pandas,
pyarrow...) takes several minutes here, beyond this test's budget, and `.ci/run` installs the
project into a fresh virtual environment anyway before it runs this test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_wine

from infermon.demo.data import WineData
from infermon.demo.model_server import ModelServer
from infermon.demo.traffic import v2_body
from infermon.errors import listening_socket
from monitor.payloads import parse_request
from monitor.store import feedback_read
from monitor.store.store import Store
from tests.fixtures.processes import REPO_ROOT, free_port, port_open

WINE_FEATURES = [str(name) for name in load_wine().feature_names]
# What the demo promises to leave alone; every other numeric feature, and the region, drift.
UNSHIFTED = {"ash", "magnesium", "hue", "proline"}
SHIFTED = set(WINE_FEATURES) - UNSHIFTED
PORT_FLAGS = ("--broker-port", "--logger-port", "--ingest-port", "--logger-admin-port",
              "--ingest-admin-port", "--monitor-admin-port", "--dashboard-port",
              "--model-port")  # fmt: skip
DEMO_TIMEOUT_S = 150


@pytest.fixture(scope="module")
def wine() -> WineData:
    return WineData(seed=1)


@pytest.fixture(scope="module")
def model(wine: WineData) -> Iterator[httpx.Client]:
    """The demo's model server, in this process as in the demo, on a port of its own."""
    listener = listening_socket("127.0.0.1", 0, "--model-port")
    server = ModelServer(wine, listener)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{listener.getsockname()[1]}") as client:
            yield client
    finally:
        server.stop()


def test_v1_and_v2_give_the_same_predictions_and_the_monitor_the_same_columns(
    wine: WineData, model: httpx.Client
) -> None:
    batch = wine.batch(6, drifted=False)
    v1 = model.post("/v1/models/wine:predict", json={"instances": batch.rows})
    v2 = model.post("/v2/models/wine/infer", json=v2_body(batch, "r1"))
    assert v1.status_code == v2.status_code == 200
    predictions = v1.json()["predictions"]
    assert v2.json()["outputs"] == [
        {"name": "prediction", "shape": [6], "datatype": "INT64", "data": predictions}
    ]
    assert np.mean(np.array(predictions) == np.array(batch.labels)) >= 0.5
    v1_rows = parse_request(json.dumps({"instances": batch.rows}).encode(), "application/json")
    v2_rows = parse_request(json.dumps(v2_body(batch, "r1")).encode(), "application/json")
    assert (v1_rows.kind, v2_rows.kind) == ("v1", "v2")
    assert v1_rows.rows == v2_rows.rows == batch.rows


def test_v1_takes_lists_of_the_numeric_features_in_order(
    wine: WineData, model: httpx.Client
) -> None:
    batch = wine.batch(3, drifted=False)
    as_lists = [[row[name] for name in WINE_FEATURES] for row in batch.rows]
    answer = model.post("/v1/models/wine:predict", json={"instances": as_lists})
    expected = model.post("/v1/models/wine:predict", json={"instances": batch.rows})
    assert answer.json() == expected.json()


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/v1/models/other:predict", {"instances": []}, 404, "no model 'other'"),
        ("/v2/models/other/infer", {"inputs": []}, 404, "no model 'other'"),
        ("/v1/models/wine:predict", {"rows": []}, 400, "instances"),
        ("/v1/models/wine:predict", {"instances": [{"alcohol": "x"}]}, 400, "'alcohol'"),
        ("/v1/models/wine:predict", {"instances": [[1, 2]]}, 400, "13 numbers"),
        ("/v2/models/wine/infer", {"inputs": [{"name": "alcohol"}]}, 400, "no data"),
        ("/v2/models/wine/infer", {"inputs": [{"name": "ash", "data": [1]}]}, 400, "'alcohol'"),
    ],
    ids=["v1 model", "v2 model", "no instances", "text", "short list", "no data", "missing"],
)
def test_a_bad_request_is_answered_with_its_reason(
    model: httpx.Client, path: str, body: dict[str, Any], status: int, reason: str
) -> None:
    answer = model.post(path, json=body)
    assert answer.status_code == status
    assert reason in answer.json()["error"]


def test_drifted_rows_shift_most_features_and_bring_a_new_region(wine: WineData) -> None:
    normal, drifted = wine.batch(3000, drifted=False), wine.batch(3000, drifted=True)
    sd = load_wine().data.std(axis=0)
    for index, name in enumerate(WINE_FEATURES):
        moved = np.mean([r[name] for r in drifted.rows]) - np.mean([r[name] for r in normal.rows])
        if name in SHIFTED:
            assert abs(moved) > sd[index], name
        else:
            assert abs(moved) < 0.15 * sd[index], name
    assert {r["region"] for r in normal.rows} == {"north", "south", "east"}
    assert {r["region"] for r in drifted.rows} == {"north", "south", "east", "west"}
    accuracy = [
        np.mean(np.array(wine.predict(batch.rows)) == np.array(batch.labels))
        for batch in (normal, drifted)
    ]
    assert accuracy[0] > 0.95 > 0.8 > accuracy[1]


def test_without_scikit_learn_the_demo_says_how_to_install_it(tmp_path: Path) -> None:
    hide_sklearn = (
        "import sys; sys.modules['sklearn'] = None; from infermon.cli import main; "
        "sys.exit(main(['demo', '--data-dir', sys.argv[1]]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_sklearn, str(tmp_path / "data")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "infermon demo: the demo needs scikit-learn: pip install -e '.[demo]'"
    ]
    assert not (tmp_path / "data").exists()


def processes_naming(text: str) -> list[str]:
    """Command lines of the running processes that mention `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in command:
                found.append(command)
    return found


@pytest.mark.slow
def test_the_demo_shows_drift_in_the_shifted_features_and_accuracy_then_stops(
    tmp_path: Path,
) -> None:
    ports = {flag: free_port() for flag in PORT_FLAGS}
    data_dir = tmp_path / "demo-data"
    argv = [sys.executable, "-m", "infermon.cli", "demo", "--duration", "30",
            "--data-dir", str(data_dir)]  # fmt: skip
    for flag, port in ports.items():
        argv += [flag, str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("INFERMON_API_TOKEN", None)
    started = time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=DEMO_TIMEOUT_S
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"http://127.0.0.1:{ports['--dashboard-port']}/#model=wine" in output
    assert "drifted traffic" in output, output

    # Nothing left behind: no process of the demo, no port listening.
    assert processes_naming(str(data_dir)) == []
    assert [flag for flag, port in ports.items() if port_open("127.0.0.1", port)] == []

    reports = stored_reports(data_dir)
    assert len(reports) >= 5, output
    first, latest = reports[-1], reports[0]  # latest first
    assert not first["dataset_drift"], first
    assert latest["dataset_drift"], latest
    drifted = {f["column"] for f in latest["features"] if f["drift"]}
    tested = {f["column"] for f in latest["features"] if f["status"] == "ok"}
    assert {*SHIFTED, "region"} <= drifted
    assert tested >= UNSHIFTED
    assert drifted & UNSHIFTED == set()
    region = next(f for f in latest["features"] if f["column"] == "region")
    assert region["unseen_categories"] == 1  # "west"

    with Store(f"sqlite:///{data_dir / 'infermon.db'}") as store, store.engine.connect() as db:
        performance = feedback_read.performance(db, "wine", None, None)
    assert performance["task"] == "classification"
    assert performance["overall"]["labelled"] > 100
    windows = [w for w in performance["windows"] if w["accuracy"] is not None]
    assert windows[0]["accuracy"] > 0.9 > 0.8 > windows[-1]["accuracy"], windows
    assert time.monotonic() - started < DEMO_TIMEOUT_S


def stored_reports(data_dir: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "infermon.cli", "reports", "--json", "--model", "wine",
         "--limit", "100", "--data-dir", str(data_dir)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    reports: list[dict[str, Any]] = json.loads(result.stdout)
    return reports
