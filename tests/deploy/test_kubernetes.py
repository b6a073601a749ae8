"""deploy/kubernetes: the kustomize base and the examples, offline.

The base is rendered as kustomize would list it (kustomization.yaml's resources, in order) and
every document is checked against the vendored Kubernetes and KServe schemas; then what the
schemas cannot know: each container runs a real `infermon` command, its INFERMON_ variables are
settings that command has and accepts, probes reach the component's admin port on paths its
admin app serves, Services select their pods, and KServe's logger URL reaches the ingest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry
from pydantic_settings import BaseSettings

from dashboards.api.reads import health_router
from dashboards.settings import DashboardSettings
from infermon import defaults
from infermon.admin import admin_app
from infermon.cli import COMMANDS
from infermon.enable_logging import INGEST_SERVICE_URL
from logger.settings import IngestSettings, LoggerSettings
from monitor.settings import MonitorSettings
from tests.deploy.validation import problems
from tests.fixtures.processes import REPO_ROOT

BASE = REPO_ROOT / "deploy" / "kubernetes"
EXAMPLES = BASE / "examples"
# Each Deployment of the base: its command, settings class and the port of /healthz, /readyz.
COMPONENTS: dict[str, tuple[str, type[BaseSettings], int]] = {
    "infermon-ingest": ("ingest", IngestSettings, defaults.INGEST_ADMIN_PORT),
    "infermon-monitor": ("monitor", MonitorSettings, defaults.MONITOR_ADMIN_PORT),
    "infermon-dashboard": ("dashboard", DashboardSettings, defaults.DASHBOARD_PORT),
}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    return loaded


def rendered_base() -> list[dict[str, Any]]:
    """The base's documents as kustomize lists them: each resource file's, in order."""
    return [doc for name in kustomization()["resources"] for doc in load_all(BASE / name)]


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return found


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            found: int = declared["containerPort"]
            return found
    raise AssertionError(f"{container['name']} declares no port {port!r}")


def test_the_kustomization_lists_every_manifest_of_the_base_and_nothing_else() -> None:
    listed = kustomization()["resources"]
    on_disk = {p.name for p in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(on_disk)
    assert len(set(listed)) == len(listed)


@pytest.mark.parametrize(
    "path",
    [BASE / name for name in kustomization()["resources"]] + sorted(EXAMPLES.glob("*.yaml")),
    ids=lambda path: path.relative_to(BASE).as_posix(),
)
def test_every_document_is_valid_against_its_kubernetes_or_kserve_schema(path: Path) -> None:
    documents = load_all(path)
    assert documents
    for document in documents:
        assert problems(document) == [], f"{document['kind']} {document['metadata']['name']}"


def test_the_schemas_refuse_what_kubectl_would() -> None:
    """The validation can fail: an unknown field, a wrong type, a logger mode KServe lacks."""
    deployment = of_kind(rendered_base(), "Deployment")["infermon-ingest"]
    containers(deployment)[0]["livenessProbe"]["httpGet"]["prot"] = "admin"
    deployment["spec"]["replicas"] = "two"
    assert len(problems(deployment)) == 2
    service = load_all(EXAMPLES / "inferenceservices.yaml")[0]
    service["spec"]["predictor"]["logger"] = {"mode": "everything", "metadataheaders": ["a"]}
    found = problems(service)
    assert len(found) == 2
    assert any("metadataheaders" in problem for problem in found)


def test_one_image_for_every_component_is_set_in_one_place() -> None:
    (image,) = kustomization()["images"]
    for deployment in of_kind(rendered_base(), "Deployment").values():
        assert {c["image"] for c in containers(deployment)} == {image["name"]}


def test_each_deployment_runs_an_infermon_command_with_settings_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = rendered_base()
    (config,) = of_kind(documents, "ConfigMap").values()
    (secret,) = of_kind(documents, "Secret").values()
    deployments = of_kind(documents, "Deployment")
    assert set(deployments) == set(COMPONENTS)
    for name, (command, settings_class, _) in COMPONENTS.items():
        (container,) = containers(deployments[name])
        assert container["args"][0] == command and command in COMMANDS
        environment = dict(config["data"])
        for variable in container.get("env", []):
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                assert reference["name"] == secret["metadata"]["name"]
                value = secret["stringData"][reference["key"]]
            else:
                value = variable["value"]
            environment[variable["name"]] = value
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        for variable in container.get("env", []):  # its own INFERMON_ variables are its own
            if variable["name"].startswith("INFERMON_"):
                field = variable["name"].removeprefix("INFERMON_").lower()
                assert field in settings_class.model_fields, variable["name"]
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        settings = settings_class()  # the values are ones the command takes
        assert settings.model_dump()["data_dir"] == config["data"]["INFERMON_DATA_DIR"]
        for variable in environment:
            monkeypatch.delenv(variable)


def test_every_shared_setting_belongs_to_a_component() -> None:
    (config,) = of_kind(rendered_base(), "ConfigMap").values()
    fields = {field for _, cls, _ in COMPONENTS.values() for field in cls.model_fields}
    for variable in config["data"]:
        assert variable.removeprefix("INFERMON_").lower() in fields, variable


def test_probes_reach_the_admin_port_on_paths_its_app_serves() -> None:
    admin_paths = {route.path for route in admin_app(CollectorRegistry(), lambda: True).routes}
    dashboard_paths = {route.path for route in health_router.routes}
    for name, deployment in of_kind(rendered_base(), "Deployment").items():
        (container,) = containers(deployment)
        _, _, admin_port = COMPONENTS[name]
        served = dashboard_paths if name == "infermon-dashboard" else admin_paths
        liveness = container["livenessProbe"]["httpGet"]
        readiness = container["readinessProbe"]["httpGet"]
        assert liveness["path"] == "/healthz"
        # The ingest stays in its Service while Kafka is away: it spools, and KServe's logger
        # drops what it cannot deliver at once.
        assert readiness["path"] == ("/healthz" if name == "infermon-ingest" else "/readyz")
        assert {liveness["path"], readiness["path"]} <= served
        for probe in (liveness, readiness):
            assert container_port(container, probe["port"]) == admin_port


def test_every_container_has_resource_requests_and_limits() -> None:
    deployments = [*of_kind(rendered_base(), "Deployment").values()]
    deployments += of_kind(load_all(EXAMPLES / "sidecar.yaml"), "Deployment").values()
    for deployment in deployments:
        for container in containers(deployment):
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), container["name"]
            assert "memory" in resources["limits"], container["name"]


@pytest.mark.parametrize("path", [BASE / "kustomization.yaml", EXAMPLES / "sidecar.yaml"])
def test_services_select_their_pods_and_name_their_ports(path: Path) -> None:
    documents = rendered_base() if path.name == "kustomization.yaml" else load_all(path)
    deployments = of_kind(documents, "Deployment")
    for name, service in of_kind(documents, "Service").items():
        selector = service["spec"]["selector"]
        (deployment,) = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert deployment["spec"]["selector"]["matchLabels"] == selector, name
        for port in service["spec"]["ports"]:
            assert any(
                port["targetPort"] in {p.get("name") for p in c.get("ports", [])}
                for c in containers(deployment)
            ), f"{name}: {port}"


def test_the_logger_url_of_the_examples_is_the_ingest_service() -> None:
    """http://infermon-ingest.infermon/ is the ingest Service in the base's namespace, on a
    Service port that leads to the ingest's own port."""
    url = urlsplit(INGEST_SERVICE_URL)
    service_name, namespace = (url.hostname or "").split(".")
    assert namespace == kustomization()["namespace"]
    documents = rendered_base()
    service = of_kind(documents, "Service")[service_name]
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == (url.port or 80)]
    (container,) = containers(of_kind(documents, "Deployment")[service_name])
    assert container_port(container, port["targetPort"]) == defaults.INGEST_PORT
    services = load_all(EXAMPLES / "inferenceservices.yaml")
    assert [s["spec"]["predictor"].get("protocolVersion") for s in services] == [None, None]
    assert [s["spec"]["predictor"]["model"].get("protocolVersion") for s in services] == [
        None,
        "v2",
    ]
    for service_manifest in services:
        logger = service_manifest["spec"]["predictor"]["logger"]
        assert logger["mode"] == "all"
        assert logger["url"] == INGEST_SERVICE_URL


def test_the_sidecar_logs_in_front_of_the_model_server_with_settings_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (deployment,) = of_kind(load_all(EXAMPLES / "sidecar.yaml"), "Deployment").values()
    model, logger = containers(deployment)
    assert logger["args"] == ["logger"]
    for variable in logger["env"]:
        assert variable["name"].removeprefix("INFERMON_").lower() in LoggerSettings.model_fields
        monkeypatch.setenv(variable["name"], variable.get("value", "from-the-pod"))
    settings = LoggerSettings()
    assert urlsplit(settings.model_url).port == container_port(model, "model")
    assert container_port(logger, "http") == settings.port == defaults.LOGGER_PORT
    for probe in (logger["livenessProbe"], logger["readinessProbe"]):
        assert container_port(logger, probe["httpGet"]["port"]) == settings.admin_port
    (service,) = of_kind(load_all(EXAMPLES / "sidecar.yaml"), "Service").values()
    assert service["spec"]["ports"][0]["targetPort"] == "http"  # calls go through the logger
