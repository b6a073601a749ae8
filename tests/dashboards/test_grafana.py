"""The Grafana dashboards in dashboards/grafana/: valid dashboard JSON, and every metric a panel
queries is one a component exports (names listed from the components' own registries)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dashboards.metrics import DashboardMetrics
from logger.metrics import IngestMetrics, ProxyMetrics
from logger.producer.metrics import SinkMetrics
from monitor.detections import DetectionMetrics
from monitor.metrics import DriftMetrics, MonitorMetrics
from monitor.store.engine import create_store_engine
from monitor.store.store import Store
from trigger.metrics import TriggerMetrics

GRAFANA = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"
BOARDS = sorted(GRAFANA.glob("*.json"))
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
METRIC = re.compile(r"\binfermon_[a-z0-9_]+")
# What a family of each type shows as series names.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def board(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def queried(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, and of every query variable."""
    found = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append((f"variable {variable['name']}", variable["definition"]))
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name the logger, the producer core, the trigger, the monitor (consumer,
    drift, detection publisher) and the dashboard can export."""
    registry = CollectorRegistry()
    for metrics in (ProxyMetrics, IngestMetrics, SinkMetrics, TriggerMetrics, MonitorMetrics,
                    DriftMetrics, DetectionMetrics):  # fmt: skip
        metrics(registry)
    url = f"sqlite:///{tmp_path_factory.mktemp('grafana') / 'infermon.db'}"
    store = Store(url)
    store.upgrade()  # an empty store: the dashboard's families are listed, without samples
    store.close()
    engine = create_store_engine(url)
    try:
        dashboard = DashboardMetrics(engine)
        families = [*registry.collect(), *dashboard.registry.collect()]
    finally:
        engine.dispose()
    names = {sample.name for family in families for sample in family.samples}
    for family in families:
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def test_there_are_dashboards_for_the_pipeline_drift_and_the_dashboard() -> None:
    assert {path.name for path in BOARDS} >= {
        "infermon-pipeline.json", "infermon-drift.json", "infermon-dashboard-api.json"
    }  # fmt: skip


@pytest.mark.parametrize("path", BOARDS, ids=lambda path: path.name)
def test_every_metric_queried_is_exported(path: Path, exported: set[str]) -> None:
    for title, expression in queried(board(path)):
        names = METRIC.findall(expression)
        assert names, f"{title}: {expression} queries no infermon metric"
        unknown = set(names) - exported
        assert not unknown, f"{path.name}, {title}: no component exports {sorted(unknown)}"


@pytest.mark.parametrize("path", BOARDS, ids=lambda path: path.name)
def test_each_is_dashboard_json_ready_to_provision(path: Path) -> None:
    dashboard = board(path)
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    assert dashboard["title"].startswith("infermon")
    assert isinstance(dashboard["schemaVersion"], int)
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    graphs = [panel for panel in panels if panel["type"] != "row"]
    assert graphs
    for panel in graphs:
        assert panel["title"] and panel["datasource"] == DATASOURCE, panel["title"]
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24 and position["h"] > 0, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']} has no query"
        assert len({target["refId"] for target in targets}) == len(targets)
        assert all(target["datasource"] == DATASOURCE and target["expr"] for target in targets)


def test_uids_are_unique() -> None:
    uids = [board(path)["uid"] for path in BOARDS]
    assert len(set(uids)) == len(uids)
