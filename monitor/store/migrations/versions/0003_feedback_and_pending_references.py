"""From the dashboard: feedback labels, and references set by a user, pending until summarised.

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-01

Written out in full rather than from monitor/store/schema.py, so that it keeps creating what it
created when later revisions change the schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("label", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "row_index", name="pk_feedback"),
    )
    # Batch mode: SQLite changes a column's nullability only by copying the table.
    with op.batch_alter_table("drift_references") as table:
        table.alter_column("sketch", existing_type=sa.LargeBinary(), nullable=True)
        table.add_column(sa.Column("origin", sa.Text(), nullable=False, server_default="monitor"))
        table.add_column(sa.Column("data", sa.LargeBinary()))


def downgrade() -> None:
    op.execute("DELETE FROM drift_references WHERE sketch IS NULL")
    with op.batch_alter_table("drift_references") as table:
        table.drop_column("data")
        table.drop_column("origin")
        table.alter_column("sketch", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("feedback")
