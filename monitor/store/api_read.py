"""What the dashboard's API reads: models at a glance, inference pages and one inference whole,
outliers with their inference. Like `read`, it imports only SQLAlchemy and the schema.
"""

from __future__ import annotations

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

from monitor.store.schema import inferences


def ping(connection: Connection) -> None:
    """Raises unless the database answers and holds the store's tables."""
    connection.execute(select(inferences.c.request_id).limit(1)).all()


def has_store_tables(connection: Connection) -> bool:
    """The monitor's tables are there (`infermon db upgrade` has run)."""
    return bool(inspect(connection).has_table(inferences.name))
