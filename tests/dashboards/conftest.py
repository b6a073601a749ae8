"""The dashboard's fixtures: databases filled by the real pipeline (tests/fixtures/dashboard.py)."""

from tests.fixtures.dashboard import dashboard_data, dashboard_url  # noqa: F401  (registers them)
