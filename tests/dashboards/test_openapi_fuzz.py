"""schemathesis over the dashboard's /openapi.json: every route, the writes with a valid token,
against a database filled by the real pipeline. No answer is a 5xx, and every answer is one its
operation declares (status, content type, body schema).

SQLite: a copy of the shared database, so that the writes (references, feedback) change no other
test's data; the stored model and calls are offered as path parameters beside generated ones,
so that the routes answer with data, not only 404s. PostgreSQL: the shared database itself, so
the writes there are left to generated models and ids (404s, and labels of no stored call).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks as built_in

from dashboards.app import create_app
from dashboards.settings import DashboardSettings
from monitor.store.engine import normalise_url
from tests.fixtures.dashboard import BINARY_CALL, MODEL, DashboardData, dashboard_server

pytestmark = pytest.mark.slow

TOKEN = "fuzz-token"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
STORED = {"model": [MODEL], "request_id": [BINARY_CALL, "call-000025", "call-000700"]}
CHECKS = [
    built_in.not_a_server_error,
    built_in.status_code_conformance,
    built_in.content_type_conformance,
    built_in.response_schema_conformance,
    built_in.response_headers_conformance,
]


def sqlite_copy(data: DashboardData, folder: Path) -> str:
    """A consistent copy of the SQLite store while the monitor keeps writing to it."""
    source = normalise_url(data.database_url).database
    copy = folder / "copy.db"
    with sqlite3.connect(str(source)) as opened, sqlite3.connect(str(copy)) as target:
        opened.backup(target)
    opened.close()
    target.close()
    return f"sqlite:///{copy}"


def offer_stored(case: schemathesis.Case, pick: int) -> None:
    """With `pick` ≥ 0, path parameters `model` and `request_id` become stored values."""
    parameters = case.path_parameters or {}
    for name, values in STORED.items():
        if pick >= 0 and name in parameters:
            parameters[name] = values[pick % len(values)]


@dataclass(frozen=True)
class Served:
    url: str
    openapi: dict[str, Any]
    on_copy: bool  # the database is this module's copy: the writes may change stored models


@pytest.fixture(scope="module")
def served(dashboard_data: DashboardData, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:  # fmt: skip
    on_copy = dashboard_data.kind == "sqlite"
    url = sqlite_copy(dashboard_data, tmp_path_factory.mktemp("fuzz")) if on_copy else None
    app = create_app(DashboardSettings(database_url=url or dashboard_data.database_url,
                                       api_token=TOKEN))  # fmt: skip
    with dashboard_server(app) as base_url:
        yield Served(base_url, app.openapi(), on_copy)


@pytest.fixture(scope="module")
def api_schema(served: Served) -> Any:
    return schemathesis.openapi.from_dict(served.openapi)


def operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, from an app that is made but never started."""
    app = create_app(DashboardSettings(database_url="sqlite:///never-opened.db", api_token=TOKEN))
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, found in paths.items() for method in found]


# schemathesis' own pytest loader (from_fixture) does not run on pytest 9; its strategies do.
@pytest.mark.parametrize(("method", "path"), operations())
def test_no_5xx_and_every_answer_as_declared(
    api_schema: Any, served: Served, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    # On the shared database (PostgreSQL), the writes go to generated models and ids only.
    stored = method == "GET" or served.on_copy
    picks = st.integers(-2, 3) if stored else st.just(-1)

    @given(case=operation.as_strategy(), pick=picks)
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def answers_as_declared(case: schemathesis.Case, pick: int) -> None:
        offer_stored(case, pick)
        case.call_and_validate(base_url=served.url, headers=AUTHORIZED, checks=CHECKS, timeout=30)

    answers_as_declared()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/models/a%00b/drift", None),
        ("GET", "/api/v1/inferences/a%00b", None),
        ("GET", f"/api/v1/models/{MODEL}/drift/history?feature=a%00b", None),
        ("POST", "/api/v1/feedback", {"request_id": "a\u0000b", "label": 1}),
    ],
)
def test_a_nul_character_is_refused_or_not_found_never_a_5xx(
    served: Served, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """What the fuzzing found: PostgreSQL refuses NUL in text, which was a 503."""
    answer = httpx.request(method, served.url + path, json=body, headers=AUTHORIZED)
    assert answer.status_code in (404, 422), answer.text
    assert answer.json()["error"]
