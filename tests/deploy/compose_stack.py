"""The compose stack as the tests read it: docker-compose.yml parsed and interpolated as
Compose does, and each infermon service's settings loaded as its command would load them."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dashboards.settings import load_dashboard_settings
from infermon.settings import InfermonSettings, load_settings
from logger.settings import IngestSettings, LoggerSettings
from monitor.settings import MonitorSettings
from trigger.settings import TriggerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_FILE = ROOT / "deploy" / "compose" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "compose" / "grafana" / "provisioning"
GRAFANA_DASHBOARDS = ROOT / "dashboards" / "grafana"

Loader = Callable[[Sequence[str]], InfermonSettings]


def _loader(settings_cls: type[InfermonSettings], command: str) -> Loader:
    return lambda argv: load_settings(settings_cls, argv, f"infermon {command}")


# Each long-running command the stack may run -> how that command loads its settings (the
# same call its `main` makes), and the class whose fields are its INFERMON_ variables.
LOADERS: dict[str, Loader] = {
    "logger": _loader(LoggerSettings, "logger"),
    "ingest": _loader(IngestSettings, "ingest"),
    "trigger": _loader(TriggerSettings, "trigger"),
    "monitor": _loader(MonitorSettings, "monitor"),
    "dashboard": load_dashboard_settings,
}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariable(Exception):
    """A `${NAME:?message}` whose variable is unset or empty, as Compose refuses it."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`,
    `${NAME?message}` and `$$`."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        value = variables.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and unset:
            raise MissingVariable(f"required variable {name} is missing a value: {arg}")
        if op in (":-", "-") and unset:
            return str(arg)
        return value or ""

    return _VARIABLE.sub(substitute, text)


def variables_named(text: str) -> set[str]:
    return {match["name"] for match in _VARIABLE.finditer(text) if match["name"]}


def _interpolated(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolated(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolated(value, variables) for key, value in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines, as Compose reads a .env file (comments and blank lines skipped)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def load_compose(variables: Mapping[str, str]) -> dict[str, Any]:
    """docker-compose.yml parsed (YAML merge keys and anchors resolved) and interpolated."""
    parsed = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(parsed, dict)
    interpolated: dict[str, Any] = _interpolated(parsed, variables)
    return interpolated


def image_environment() -> dict[str, str]:
    """The `ENV` the Dockerfile sets: what every infermon container starts with."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line.removeprefix("ENV ")):
                name, _, value = pair.partition("=")
                found[name] = value
    return found


def command_of(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {str(name): "" if value is None else str(value) for name, value in environment.items()}


def infermon_services(compose: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile: infermon components."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


@contextmanager
def only_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """The process environment as a container would have it for INFERMON_ settings: these
    variables, and none of the caller's own INFERMON_ ones."""
    saved = {name: value for name, value in os.environ.items() if name.startswith("INFERMON_")}
    for name in saved:
        del os.environ[name]
    os.environ.update(variables)
    try:
        yield
    finally:
        for name in variables:
            os.environ.pop(name, None)
        os.environ.update(saved)


def settings_of(service: Mapping[str, Any]) -> InfermonSettings:
    """The service's settings as its command loads them in its container: its flags, over
    its environment and the image's, over the defaults. A flag or a value the command does
    not take raises `UsageError`, as the command would."""
    command = command_of(service)
    environment = {**image_environment(), **environment_of(service)}
    with only_environment(environment):
        return LOADERS[command[0]](command[1:])


@dataclass(frozen=True)
class Published:
    service: str
    host_ip: str
    host_port: int
    container_port: int


def published_ports(compose: Mapping[str, Any]) -> list[Published]:
    """Every `ports:` entry, short (`[ip:]host:container`) or long syntax."""
    found: list[Published] = []
    for name, service in compose["services"].items():
        for entry in service.get("ports", []):
            if isinstance(entry, dict):
                host_ip = str(entry.get("host_ip", ""))
                host, container = entry["published"], entry["target"]
            else:
                parts = str(entry).removesuffix("/tcp").split(":")
                assert len(parts) in (2, 3), f"{name}: a port without its host port: {entry}"
                host_ip = parts[0] if len(parts) == 3 else ""
                host, container = parts[-2], parts[-1]
            found.append(Published(name, host_ip, int(host), int(container)))
    return found


def mounts_of(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume entry, short or long syntax."""
    found: list[tuple[str, str]] = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            found.append((str(entry["source"]), str(entry["target"])))
        else:
            source, target = str(entry).split(":")[:2]
            found.append((source, target))
    return found


def named_volume_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """{target: volume name} of the mounts whose source is a named volume, not a host path."""
    return {
        target: source for source, target in mounts_of(service) if not source.startswith((".", "/"))
    }
