"""Bearer tokens: writes need INFERMON_API_TOKEN, reads INFERMON_API_READ_TOKEN when it is set.

Without a token the answer is 401, with a wrong one 403. Tokens are compared in constant time
(hmac.compare_digest) and never logged. The write token reads too: whoever may write may read.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from dashboards.errors import ApiError
from dashboards.settings import DashboardSettings

_bearer = HTTPBearer(auto_error=False, description="INFERMON_API_TOKEN (writes), "
                     "INFERMON_API_READ_TOKEN (reads, when set)")  # fmt: skip


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def settings_of(request: Request) -> DashboardSettings:
    found: DashboardSettings = request.app.state.settings
    return found


def _matches(given: str, token: SecretStr | None) -> bool:
    if token is None:
        return False
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def _check(credentials: HTTPAuthorizationCredentials | None, *tokens: SecretStr | None) -> None:
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "a Bearer token is required", {"WWW-Authenticate": "Bearer"})
    # Both compared, whatever the first gives: the time taken says nothing of which matched.
    matched = [_matches(credentials.credentials, token) for token in tokens]
    if not any(matched):
        raise ApiError(403, "the Bearer token is not valid here")


def require_read(request: Request, credentials: Credentials) -> None:
    settings = settings_of(request)
    if settings.api_read_token is None:
        return
    _check(credentials, settings.api_read_token, settings.api_token)


def require_write(request: Request, credentials: Credentials) -> None:
    settings = settings_of(request)
    if settings.api_token is None and settings.insecure_writes:
        return
    _check(credentials, settings.api_token)
