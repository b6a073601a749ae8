"""Every error the API answers is a JSON body `{"error": "<reason>"}`.

Unknown models and ids are 404, a bad parameter 422 (FastAPI's validation detail rewritten to
one short reason; also a value the database refuses, such as a NUL character in text on
PostgreSQL), a body too large 413. No input gives a 5xx: a database that cannot be reached is
a 503, and anything else unexpected a 500 without details (logged here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException

from infermon.errors import first_line

log = logging.getLogger(__name__)

# A reason quotes the input it refuses: keep it short.
MAX_REASON_CHARS = 300


DATABASE_UNAVAILABLE = "the database cannot be read now"


class ErrorBody(BaseModel):
    """What every error answers."""

    error: str


class ApiError(Exception):
    """An answer with a 4xx `status` and its `reason`."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, what)


def bad_request(reason: str) -> ApiError:
    return ApiError(422, reason)


# Documented on every route that can answer them (`responses=` of the routers).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no Bearer token, and one is required"},
    403: {"model": ErrorBody, "description": "a wrong Bearer token"},
    422: {"model": ErrorBody, "description": "a bad parameter"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such model or id"}
}


def error_response(
    status: int, reason: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": reason[:MAX_REASON_CHARS]}, status_code=status, headers=headers)


def validation_reason(error: RequestValidationError) -> str:
    """FastAPI's list of problems as one line: `query limit: Input should be ... ; ...`."""
    problems = []
    for detail in error.errors():
        where = " ".join(str(part) for part in detail.get("loc", ()))
        problems.append(f"{where}: {detail.get('msg', 'invalid')}".strip(": "))
    return "; ".join(problems) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(error.status, error.reason, error.headers)

    async def http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return error_response(error.status_code, str(error.detail), error.headers)

    async def invalid(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(422, validation_reason(error))

    async def unstorable(request: Request, error: Exception) -> JSONResponse:
        # The database refused a value given to it (PostgreSQL: a NUL character in text, an
        # integer out of range): the input's fault, not the database's.
        log.info("%s %s: the database refused a value: %s", request.method, request.url.path,
                 str(error).splitlines()[0])  # fmt: skip
        return error_response(422, "a value the database cannot take (e.g. a NUL character)")

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        reason = first_line(getattr(error, "orig", None) or error)
        log.warning("%s %s: database error: %s", request.method, request.url.path, reason)
        return error_response(503, DATABASE_UNAVAILABLE)

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
        return error_response(500, "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(DataError, unstorable)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(Exception, unexpected)
