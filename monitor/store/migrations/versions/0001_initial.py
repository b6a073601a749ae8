"""Events, inferences, instances and dead letters.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out in full rather than from monitor/store/schema.py, so that it keeps creating what it
created when later revisions change the schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
AWAITING_RESPONSE = "has_request AND NOT has_response AND NOT orphaned"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text()),
        sa.Column("time", TIME, nullable=False),
        sa.Column("stored_at", TIME, nullable=False),
        sa.Column("content_type", sa.Text()),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_bytes", sa.Integer(), nullable=False),
        sa.Column("payload_kind", sa.Text(), nullable=False),
        sa.Column("parse_error", sa.Text()),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("kafka_topic", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id", "type", name="pk_events"),
    )
    op.create_index("ix_events_request_id", "events", ["request_id"])
    op.create_index("ix_events_time", "events", ["time"], postgresql_using="brin")

    op.create_table(
        "inferences",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("model", sa.Text()),
        sa.Column("namespace", sa.Text()),
        sa.Column("inference_service", sa.Text()),
        sa.Column("component", sa.Text()),
        sa.Column("protocol", sa.Text()),
        sa.Column("time", TIME, nullable=False),
        sa.Column("request_time", TIME),
        sa.Column("response_time", TIME),
        sa.Column("latency_ms", sa.Float()),
        sa.Column("status_code", sa.Integer()),
        sa.Column("batch_size", sa.Integer()),
        sa.Column("request_rows", sa.Integer()),
        sa.Column("response_rows", sa.Integer()),
        sa.Column("batch_size_mismatch", sa.Boolean(), nullable=False),
        sa.Column("has_request", sa.Boolean(), nullable=False),
        sa.Column("has_response", sa.Boolean(), nullable=False),
        sa.Column("orphaned", sa.Boolean(), nullable=False),
        sa.Column("request_payload_kind", sa.Text()),
        sa.Column("response_payload_kind", sa.Text()),
        sa.PrimaryKeyConstraint("request_id", name="pk_inferences"),
    )
    op.create_index("ix_inferences_time", "inferences", ["time"])
    op.create_index("ix_inferences_model_time", "inferences", ["model", sa.text("time DESC")])
    op.create_index(
        "ix_inferences_awaiting_response",
        "inferences",
        ["time"],
        postgresql_where=sa.text(AWAITING_RESPONSE),
        sqlite_where=sa.text(AWAITING_RESPONSE),
    )

    op.create_table(
        "instances",
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("model", sa.Text()),
        sa.Column("time", TIME, nullable=False),
        sa.Column("features", sa.JSON()),
        sa.Column("prediction", sa.JSON()),
        sa.PrimaryKeyConstraint("request_id", "row_index", name="pk_instances"),
    )
    op.create_index("ix_instances_model_time", "instances", ["model", sa.text("time DESC")])

    op.create_table(
        "dead_letters",
        sa.Column("kafka_topic", sa.Text(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary()),
        sa.Column("value", sa.LargeBinary()),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("error_class", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("stored_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint(
            "kafka_topic", "kafka_partition", "kafka_offset", name="pk_dead_letters"
        ),
    )
    op.create_index("ix_dead_letters_stored_at", "dead_letters", ["stored_at"])


def downgrade() -> None:
    for table in ("dead_letters", "instances", "inferences", "events"):
        op.drop_table(table)
