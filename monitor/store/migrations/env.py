"""Alembic's environment: always handed a connection, inside its caller's transaction."""

from __future__ import annotations

from alembic import context

from monitor.store.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
