"""A partial index of the calls answered with an error, for the dashboard's traffic counts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Counting a time bucket's errors then reads only the index entries of its errors (a few per
cent of the calls at most, so the index is small and near-free to keep up) instead of every
call of the bucket from the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ERRORS = "status_code >= 400"


def upgrade() -> None:
    op.create_index(
        "ix_inferences_model_errors",
        "inferences",
        ["model", "time"],
        sqlite_where=sa.text(ERRORS),
        postgresql_where=sa.text(ERRORS),
    )


def downgrade() -> None:
    op.drop_index("ix_inferences_model_errors", table_name="inferences")
