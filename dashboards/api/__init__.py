"""The JSON API under /api/v1: reads, writes, performance; their response models."""

API_PREFIX = "/api/v1"
