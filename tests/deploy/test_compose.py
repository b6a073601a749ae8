"""docker-compose.yml against what the components really take: every command, flag, variable
and port is the CLI's own (loaded through each command's settings class), every admin port is
scraped, every spool is on a named volume, every service has a health check; and Compose's
own reading of the file where a Compose v2 binary is at hand."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from infermon.cli import COMMANDS
from infermon.errors import UsageError
from infermon.settings import InfermonSettings
from logger.producer.settings import SinkSettings
from tests.deploy.compose_stack import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    GRAFANA_DASHBOARDS,
    GRAFANA_PROVISIONING,
    LOADERS,
    PROMETHEUS_FILE,
    ROOT,
    MissingVariable,
    command_of,
    environment_of,
    infermon_services,
    interpolate,
    load_compose,
    mounts_of,
    named_volume_mounts,
    published_ports,
    read_env_file,
    settings_of,
    variables_named,
)

# .env as a user makes it from .env.example: the example with the required token set.
VARIABLES = {**read_env_file(ENV_EXAMPLE), "INFERMON_API_TOKEN": "token-for-the-tests"}
COMPOSE = load_compose(VARIABLES)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INFERMON = infermon_services(COMPOSE)
READYZ = re.compile(r"'http://127\.0\.0\.1:(\d+)/readyz'")


def _settings(name: str) -> InfermonSettings:
    return settings_of(INFERMON[name])


def _listening_ports(settings: InfermonSettings) -> set[int]:
    return {
        getattr(settings, field) for field in ("port", "admin_port") if hasattr(settings, field)
    }


def _metrics_port(name: str, settings: InfermonSettings) -> int:
    """Where a component's /metrics and /readyz are: its admin port, or for the dashboard its
    one port."""
    port = getattr(settings, "admin_port", None)
    return int(port if port is not None else getattr(settings, "port"))  # noqa: B009


def _unknown_variables(environment: dict[str, str], settings: InfermonSettings) -> set[str]:
    """Variables the component would ignore: not INFERMON_<FIELD> of its settings class."""
    known = {f"INFERMON_{field.upper()}" for field in type(settings).model_fields}
    return set(environment) - known


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration))


# Commands, flags, environment variables


def test_the_stack_runs_every_long_running_component() -> None:
    assert set(LOADERS) <= set(COMMANDS)
    assert sorted(command_of(svc)[0] for svc in INFERMON.values()) == sorted(LOADERS)


@pytest.mark.parametrize("name", sorted(INFERMON))
def test_command_flags_and_environment_are_the_cli_s_own(name: str) -> None:
    service = INFERMON[name]
    assert command_of(service)[0] in COMMANDS
    settings = _settings(name)  # an unknown flag or a bad value: UsageError, as in the container
    assert _unknown_variables(environment_of(service), settings) == set()


def test_a_flag_or_variable_the_cli_lacks_is_caught() -> None:
    """The checks above can fail: a misspelt flag or variable in a service is found."""
    service = {**INFERMON["logger"], "command": [*command_of(INFERMON["logger"]), "--mdoel-url"]}
    with pytest.raises(UsageError, match="mdoel-url"):
        settings_of(service)
    misspelt = {"INFERMON_KAFKA_BOOTSTRAPS": "kafka:9092"}
    assert _unknown_variables(misspelt, _settings("logger")) == set(misspelt)


@pytest.mark.parametrize("name", sorted(INFERMON))
def test_every_component_listens_beyond_its_container(name: str) -> None:
    settings = _settings(name)
    for field in ("host", "admin_host"):
        if hasattr(settings, field):
            assert getattr(settings, field) == "0.0.0.0", f"{name}: {field}"


def test_the_dashboard_has_its_write_token_and_would_start() -> None:
    settings = _settings("dashboard")
    assert settings.model_dump()["api_token"] is not None


def test_services_reach_kafka_postgres_and_the_model_by_their_service_names() -> None:
    kafka = environment_of(SERVICES["kafka"])
    advertised = {a.split("://")[1] for a in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    postgres = environment_of(SERVICES["postgres"])
    for name in INFERMON:
        dump = _settings(name).model_dump()
        if "kafka_bootstrap" in dump:
            assert set(dump["kafka_bootstrap"].split(",")) <= advertised, name
        if "database_url" in dump:
            url = make_url(dump["database_url"])
            assert (url.host, url.port) == ("postgres", 5432), name
            assert (url.username, url.password, url.database) == (
                postgres["POSTGRES_USER"],
                postgres["POSTGRES_PASSWORD"],
                postgres["POSTGRES_DB"],
            ), name
        if "model_url" in dump:
            model = urlsplit(dump["model_url"])
            assert model.hostname in SERVICES, name
            health = " ".join(SERVICES[str(model.hostname)]["healthcheck"]["test"])
            assert f":{model.port}/" in health, f"{name}: the model's health check, another port"


# Ports


@pytest.mark.parametrize("name", sorted(INFERMON))
def test_published_ports_are_ones_the_component_listens_on(name: str) -> None:
    listening = _listening_ports(_settings(name))
    for port in published_ports(COMPOSE):
        if port.service == name:
            assert port.container_port in listening, f"{name} does not listen on {port}"


def test_no_two_services_publish_one_host_port() -> None:
    counts = Counter(port.host_port for port in published_ports(COMPOSE))
    assert [port for port, n in counts.items() if n > 1] == []


def test_kafka_s_published_port_is_its_host_listener() -> None:
    kafka = environment_of(SERVICES["kafka"])
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"]
    listeners = dict(item.split("://:") for item in kafka["KAFKA_LISTENERS"].split(","))
    for port in published_ports(COMPOSE):
        if port.service == "kafka":
            assert int(listeners["HOST"]) == port.container_port
            assert f"HOST://localhost:{port.host_port}" in advertised


# Health


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_health_check(name: str) -> None:
    test = SERVICES[name].get("healthcheck", {}).get("test", [])
    assert test and test[0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("name", sorted(INFERMON))
def test_components_are_healthy_when_their_readyz_says_so(name: str) -> None:
    test = INFERMON[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]  # the slim image has Python, not curl
    ports = READYZ.findall(test[3])
    assert ports == [str(_metrics_port(name, _settings(name)))]


class _Readyz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def readyz_server(request: pytest.FixtureRequest) -> Iterator[int]:
    handler = type("Handler", (_Readyz,), {"status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def _run_health_check(port: int) -> int:
    snippet = READYZ.sub(
        f"'http://127.0.0.1:{port}/readyz'", INFERMON["logger"]["healthcheck"]["test"][3]
    )
    return subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, timeout=30
    ).returncode


@pytest.mark.parametrize(
    ("readyz_server", "healthy"), [(200, True), (503, False)], indirect=["readyz_server"]
)
def test_the_health_check_command_follows_readyz(readyz_server: int, healthy: bool) -> None:
    assert (_run_health_check(readyz_server) == 0) is healthy


def test_the_health_check_command_fails_when_nothing_listens() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    port = server.server_address[1]
    server.server_close()
    assert _run_health_check(port) != 0


def test_services_wait_for_what_they_need_to_be_healthy() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}"
            assert "healthcheck" in SERVICES[dependency]
    # The dashboard refuses to start without the schema, which the monitor creates.
    assert "monitor" in SERVICES["dashboard"]["depends_on"]


@pytest.mark.parametrize("name", sorted(INFERMON))
def test_docker_waits_for_the_flush_before_killing(name: str) -> None:
    settings = _settings(name)
    if isinstance(settings, SinkSettings):
        grace = _seconds(INFERMON[name].get("stop_grace_period", "10s"))
        assert grace > settings.shutdown_timeout_s, name


# Prometheus and Grafana


def _scrape_targets() -> dict[str, dict[str, Any]]:
    """{host:port: its scrape config}, static targets and DNS-discovered names alike."""
    config = yaml.safe_load(PROMETHEUS_FILE.read_text())
    targets: dict[str, dict[str, Any]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.update(dict.fromkeys(static["targets"], job))
        for dns in job.get("dns_sd_configs", []):
            targets.update({f"{host}:{dns['port']}": job for host in dns["names"]})
    return targets


def test_every_metrics_port_is_scraped() -> None:
    targets = _scrape_targets()
    for name in INFERMON:
        target = f"{name}:{_metrics_port(name, _settings(name))}"
        assert target in targets, f"{target} is not scraped"
        assert targets[target].get("metrics_path", "/metrics") == "/metrics"


def test_every_scrape_target_is_a_port_of_a_service() -> None:
    for target in _scrape_targets():
        host, port = target.rsplit(":", 1)
        if host == "localhost":  # Prometheus itself
            continue
        assert int(port) in _listening_ports(_settings(host)), target


def test_the_dashboard_is_scraped_with_the_read_token() -> None:
    job = _scrape_targets()[f"dashboard:{_settings('dashboard').model_dump()['port']}"]
    secret = Path(job["authorization"]["credentials_file"])
    assert secret.parent == Path("/run/secrets")
    assert secret.name in SERVICES["prometheus"]["secrets"]
    assert COMPOSE["secrets"][secret.name] == {"environment": "INFERMON_API_READ_TOKEN"}


def test_prometheus_reads_this_config() -> None:
    prometheus = SERVICES["prometheus"]
    config = next(
        f.split("=", 1)[1] for f in prometheus["command"] if f.startswith("--config.file")
    )
    assert ("./deploy/compose/prometheus.yml", config) in mounts_of(prometheus)


def _grafana_mount(source: str) -> str:
    return next(target for src, target in mounts_of(SERVICES["grafana"]) if src == source)


def test_grafana_is_provisioned_with_the_dashboards_and_prometheus() -> None:
    assert _grafana_mount("./deploy/compose/grafana/provisioning") == "/etc/grafana/provisioning"
    providers = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "infermon.yml").read_text())
    paths = [provider["options"]["path"] for provider in providers["providers"]]
    assert paths == [_grafana_mount("./dashboards/grafana")]
    sources = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    [prometheus] = sources["datasources"]
    assert prometheus["isDefault"] and prometheus["url"] == "http://prometheus:9090"


def _datasource_uids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict) and "uid" in node["datasource"]:
            yield node["datasource"]["uid"]
        for value in node.values():
            yield from _datasource_uids(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_uids(item)


def test_every_dashboard_datasource_resolves_in_the_stack() -> None:
    import json

    dashboards = sorted(GRAFANA_DASHBOARDS.glob("*.json"))
    if not dashboards:
        pytest.skip("no Grafana dashboards in dashboards/grafana/ yet")
    sources = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    uids = {source["uid"] for source in sources["datasources"]}
    types = {source["type"] for source in sources["datasources"]}
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        variables = {
            v["name"]: v["query"]
            for v in dashboard.get("templating", {}).get("list", [])
            if v.get("type") == "datasource"
        }
        for uid in set(_datasource_uids(dashboard)):
            variable = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", uid)
            if variable:  # a datasource variable: resolved to a provisioned one of its type
                assert variables[variable[1] or variable[2]] in types, f"{path.name}: {uid}"
            else:
                assert uid in uids, f"{path.name}: datasource {uid} is not provisioned"


# Volumes and files


@pytest.mark.parametrize("name", sorted(INFERMON))
def test_every_spool_is_on_a_named_volume(name: str) -> None:
    settings = _settings(name)
    if not isinstance(settings, SinkSettings) or settings.spool_path is None:
        return
    targets = named_volume_mounts(INFERMON[name])
    spool = settings.spool_path
    assert spool.is_absolute(), f"{name}: spool {spool} is relative to the working directory"
    assert any(spool.is_relative_to(target) for target in targets), f"{name}: {spool}"


def test_databases_and_dashboards_state_are_on_named_volumes() -> None:
    assert "/var/lib/postgresql/data" in named_volume_mounts(SERVICES["postgres"])
    assert "/var/lib/kafka/data" in named_volume_mounts(SERVICES["kafka"])
    assert environment_of(SERVICES["kafka"])["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "/var/lib/grafana" in named_volume_mounts(SERVICES["grafana"])


def test_named_volumes_are_declared_and_used() -> None:
    used = {v for svc in SERVICES.values() for v in named_volume_mounts(svc).values()}
    assert used == set(COMPOSE["volumes"])


def test_every_bind_mount_is_a_file_of_the_repository() -> None:
    for name, service in SERVICES.items():
        for source, _ in mounts_of(service):
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"


@pytest.mark.slow  # scikit-learn imported twice: seconds on a busy machine
def test_the_sample_model_trains_offline_into_its_model_dir(tmp_path: Path) -> None:
    """The model service's start: the training script, then KServe's server on its output."""
    pytest.importorskip("sklearn", reason="the sample model's training needs scikit-learn")
    import joblib
    from sklearn.datasets import load_iris

    command = SERVICES["model"]["command"][0]
    script, model_dir = re.search(r"python (\S+) (\S+) &&", command).groups()  # type: ignore[union-attr]
    assert f"--model_dir {model_dir} " in command
    mount = dict((t, s) for s, t in mounts_of(SERVICES["model"]))[str(Path(script).parent)]
    subprocess.run(
        [sys.executable, str(ROOT / mount / Path(script).name), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    features, labels = load_iris(return_X_y=True)
    model = joblib.load(tmp_path / "model.joblib")
    assert (model.predict(features) == labels).mean() > 0.9


# .env


def test_env_example_names_every_variable_the_file_uses() -> None:
    assert variables_named(COMPOSE_FILE.read_text()) == set(read_env_file(ENV_EXAMPLE))


def test_the_api_token_is_required_from_env() -> None:
    assert read_env_file(ENV_EXAMPLE)["INFERMON_API_TOKEN"] == ""  # no shared default secret
    with pytest.raises(MissingVariable, match=r"INFERMON_API_TOKEN .*set it in \.env"):
        load_compose(read_env_file(ENV_EXAMPLE))
    assert (
        INFERMON["dashboard"]["environment"]["INFERMON_API_TOKEN"]
        == VARIABLES["INFERMON_API_TOKEN"]
    )


def test_env_stays_out_of_git_and_the_image() -> None:
    for ignore_file in (".gitignore", ".dockerignore"):
        assert ".env" in (ROOT / ignore_file).read_text().splitlines(), ignore_file


def test_interpolation_as_compose_does_it() -> None:
    variables = {"SET": "a", "EMPTY": ""}
    assert interpolate("${SET:-x} ${EMPTY:-x} ${EMPTY-x} ${UNSET-x} $${SET}", variables) == (
        "a x  x ${SET}"
    )
    with pytest.raises(MissingVariable, match="needed"):
        interpolate("${EMPTY:?needed}", variables)
    assert interpolate("${EMPTY?needed}", variables) == ""
