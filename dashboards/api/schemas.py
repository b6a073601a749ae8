"""The API's response models: what /openapi.json says each route answers."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
