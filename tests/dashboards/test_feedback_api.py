"""POST /feedback and GET /models/{model}/performance over calls through the real pipeline
(a real broker, an `infermon monitor` storing them and evaluating windows of 100), on SQLite
and PostgreSQL: the figures equal scikit-learn's on the same labels, a label sent before its
call counts once the call is stored, and a later label replaces an earlier one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from monitor.store.detection_store import DetectionStore
from monitor.store.store import Store
from tests.dashboards.pipeline import MODEL, Calls, dashboard, writing
from tests.fixtures.factories import TopicFactory
from tests.monitor.consumer_helpers import (
    detection_config,
    start_detecting_monitor,
    wait_for,
    wait_for_stats,
)

pytestmark = pytest.mark.slow


def expected(truth: list[int], guess: list[int]) -> dict[str, Any]:
    figures: dict[str, Any] = {"labelled": len(truth), "accuracy": accuracy_score(truth, guess)}
    for name, metric in (("precision", precision_score), ("recall", recall_score),
                         ("f1", f1_score)):  # fmt: skip
        figures[name] = metric(truth, guess, average="macro", zero_division=0)
    return figures


def performance(api: httpx.Client) -> dict[str, Any]:
    response = api.get(f"/api/v1/models/{MODEL}/performance")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def post(api: httpx.Client, labels: dict[str, int]) -> dict[str, Any]:
    body = [{"request_id": request_id, "label": label} for request_id, label in labels.items()]
    response = api.post("/api/v1/feedback", json=body, headers=writing())
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return detection_config(tmp_path, instances=100)


def test_feedback_gives_scikit_learns_figures_and_joins_early_labels(
    kafka_bootstrap: str, new_topic: TopicFactory, database_url: str, config: Path
) -> None:
    topic = new_topic()
    calls = Calls(kafka_bootstrap, topic)
    rng = np.random.default_rng(11)
    start = datetime.now(UTC) - timedelta(seconds=60)
    store = Store(database_url)
    with (
        start_detecting_monitor(kafka_bootstrap, topic, database_url, config),
        dashboard(database_url) as api,
    ):
        sent = calls.send(400, start)
        wait_for_stats(store, lambda s: s["instances"] >= 400)
        wait_for("three windows", lambda: len(DetectionStore(store).reports(MODEL)) >= 3)
        # Mostly the model's answer, else another class, some of them one it never gives.
        labels = {r: calls.predictions[r] if rng.random() < 0.7 else int(rng.integers(0, 3))
                  for r in sent[:350]}  # fmt: skip
        answer = post(api, labels)
        early = {Calls.request_id(n): 1 for n in range(401, 421)}  # calls not sent yet
        post(api, early)
        before = performance(api)

        calls.send(20, start + timedelta(seconds=2))
        wait_for_stats(store, lambda s: s["instances"] >= 420)
        after = performance(api)
        replaced = {r: 1 - calls.predictions[r] for r in sent[:50]}  # now all wrong
        post(api, replaced)
        corrected = performance(api)
    store.close()

    assert answer == {"received": 350, "stored": 350}
    guess = [calls.predictions[r] for r in labels]
    assert before["task"] == "classification"
    confusion = before["overall"].pop("confusion")
    assert before["overall"] == pytest.approx(
        {**expected(list(labels.values()), guess), "mae": None, "rmse": None, "bias": None},
        abs=1e-12,
    )
    assert confusion == {
        "labels": ["0", "1", "2"],
        "matrix": confusion_matrix(list(labels.values()), guess, labels=[0, 1, 2]).tolist(),
    }
    # Windows of the monitor: 100 instances each after the reference's 100; each labelled
    # instance in exactly one.
    assert before["windows_from"] == "drift windows"
    assert sum(w["labelled"] for w in before["windows"]) == 350 - 100
    assert after["overall"]["labelled"] == 370  # the early labels joined their calls
    everything = {**labels, **early}
    assert after["overall"]["accuracy"] == pytest.approx(
        accuracy_score(list(everything.values()), [calls.predictions[r] for r in everything]),
        abs=1e-12,
    )
    final = {**everything, **replaced}
    assert corrected["overall"]["f1"] == pytest.approx(f1_score(
        list(final.values()), [calls.predictions[r] for r in final], average="macro",
        zero_division=0), abs=1e-12)  # fmt: skip
