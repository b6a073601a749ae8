"""Tokens (401 without one, 403 with a wrong one), settings that hide them, /healthz and
/readyz (false when the database cannot be reached), over the pipeline-filled databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI

from dashboards.app import create_app
from dashboards.auth import require_write
from dashboards.settings import DashboardSettings
from tests.fixtures.dashboard import WRITE_TOKEN, DashboardData, dashboard_server

pytestmark = pytest.mark.slow
READ_TOKEN = "read-secret"


def with_a_write_route(app: FastAPI) -> FastAPI:
    """The write dependency on a route of its own: the routes that write come separately."""

    @app.post("/api/v1/test-write", dependencies=[Depends(require_write)])
    def write() -> dict[str, bool]:
        return {"written": True}

    return app


@pytest.fixture
def guarded(dashboard_data: DashboardData) -> Iterator[httpx.Client]:
    """Reads need READ_TOKEN (or the write token), writes WRITE_TOKEN."""
    settings = dashboard_data.settings(api_token=WRITE_TOKEN, api_read_token=READ_TOKEN)
    with dashboard_server(with_a_write_route(create_app(settings))) as url, httpx.Client(
        base_url=url, timeout=10
    ) as client:  # fmt: skip
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reads_with_a_read_token_set_need_it(guarded: httpx.Client) -> None:
    missing = guarded.get("/api/v1/models")
    assert missing.status_code == 401 and "token" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = guarded.get("/api/v1/models", headers=bearer("guess"))
    assert wrong.status_code == 403 and "token" in wrong.json()["error"]
    assert guarded.get("/api/v1/models", headers=bearer(READ_TOKEN)).status_code == 200
    assert guarded.get("/api/v1/models", headers=bearer(WRITE_TOKEN)).status_code == 200
    assert guarded.get("/api/v1/models", headers={"Authorization": "Basic eDp5"}).status_code == 401


def test_writes_need_the_write_token(guarded: httpx.Client) -> None:
    assert guarded.post("/api/v1/test-write").status_code == 401
    assert guarded.post("/api/v1/test-write", headers=bearer(READ_TOKEN)).status_code == 403
    assert guarded.post("/api/v1/test-write", headers=bearer(WRITE_TOKEN)).json() == {
        "written": True
    }


def test_insecure_writes_without_a_token_are_open_and_with_one_are_not(
    dashboard_data: DashboardData,
) -> None:
    for settings, expected in (
        (dashboard_data.settings(insecure_writes=True), 200),
        (dashboard_data.settings(insecure_writes=True, api_token=WRITE_TOKEN), 401),
    ):
        with dashboard_server(with_a_write_route(create_app(settings))) as url:
            assert httpx.post(f"{url}/api/v1/test-write").status_code == expected


def test_health_and_readiness_are_open(guarded: httpx.Client) -> None:
    assert guarded.get("/healthz").json() == {"status": "ok"}
    assert guarded.get("/readyz").json() == {"ready": True}


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://postgres@127.0.0.1:1/infermon", "sqlite:///{tmp}/gone.db"]
)
def test_readyz_is_false_when_the_database_cannot_be_reached(url: str, tmp_path: Path) -> None:
    settings = DashboardSettings(database_url=url.format(tmp=tmp_path), insecure_writes=True)
    with dashboard_server(create_app(settings)) as base:
        answer = httpx.get(f"{base}/readyz", timeout=20)
        assert (answer.status_code, answer.json()) == (503, {"ready": False})
        models = httpx.get(f"{base}/api/v1/models", timeout=20)
        assert models.status_code == 503 and "database" in models.json()["error"]
    assert not (tmp_path / "gone.db").exists()


def test_tokens_never_show_in_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERMON_API_TOKEN", WRITE_TOKEN)
    monkeypatch.setenv("INFERMON_API_READ_TOKEN", READ_TOKEN)
    settings = DashboardSettings()
    assert settings.api_token is not None and settings.api_read_token is not None
    assert settings.api_token.get_secret_value() == WRITE_TOKEN
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert WRITE_TOKEN not in shown and READ_TOKEN not in shown


def test_an_empty_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERMON_API_TOKEN", "")
    assert DashboardSettings().api_token is None
