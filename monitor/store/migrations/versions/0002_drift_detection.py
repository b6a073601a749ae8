"""Drift detection: references, windows, reports, their features, outliers.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01

Written out in full rather than from monitor/store/schema.py, so that it keeps creating what it
created when later revisions change the schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def _key(prefix: str) -> list[sa.Column[object]]:
    """An instance key: (time, request_id, row_index)."""
    return [
        sa.Column(f"{prefix}_time", TIME),
        sa.Column(f"{prefix}_request_id", sa.Text()),
        sa.Column(f"{prefix}_row_index", sa.Integer()),
    ]


def upgrade() -> None:
    op.create_table(
        "drift_references",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("sketch", sa.LargeBinary(), nullable=False),
        sa.Column("outlier_detector", sa.LargeBinary()),
        *_key("first"),
        *_key("last"),
        sa.PrimaryKeyConstraint("model", "version", name="pk_drift_references"),
    )

    op.create_table(
        "drift_windows",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("window_start", TIME, nullable=False),
        sa.Column("window_end", TIME, nullable=False),
        *_key("after"),
        *_key("end"),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=False),
        sa.Column("lease_until", TIME, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("instances", sa.Integer()),
        sa.Column("late", sa.Integer()),
        sa.Column("reference_version", sa.Integer(), nullable=False),
        sa.Column("done_at", TIME),
        sa.PrimaryKeyConstraint("id", name="pk_drift_windows"),
        sa.UniqueConstraint("model", "seq", name="uq_drift_windows_model_seq"),
    )
    op.create_index("ix_drift_windows_state_lease", "drift_windows", ["state", "lease_until"])
    op.create_index("ix_drift_windows_done_at", "drift_windows", ["done_at"])

    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("window_start", TIME, nullable=False),
        sa.Column("window_end", TIME, nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("reference_version", sa.Integer(), nullable=False),
        sa.Column("dataset_drift", sa.Boolean(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("drifted", sa.Integer(), nullable=False),
        sa.Column("valid", sa.Integer(), nullable=False),
        sa.Column("drift_share", sa.Float(), nullable=False),
        sa.Column("correction", sa.Text(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("outliers", sa.Integer(), nullable=False),
        sa.Column("computed_at", TIME, nullable=False),
        sa.Column("multivariate", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name="pk_drift_reports"),
        sa.UniqueConstraint("window_id", "revision", name="uq_drift_reports_window_revision"),
    )
    op.create_index(
        "ix_drift_reports_model_end", "drift_reports", ["model", sa.text("window_end DESC")]
    )
    op.create_index("ix_drift_reports_computed_at", "drift_reports", [sa.text("computed_at DESC")])

    op.create_table(
        "drift_features",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("column", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("test", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("statistic", sa.Float()),
        sa.Column("p_value", sa.Float()),
        sa.Column("distance", sa.Float()),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("threshold_source", sa.Text(), nullable=False),
        sa.Column("drift", sa.Boolean(), nullable=False),
        sa.Column("missing_share", sa.Float(), nullable=False),
        sa.Column("reference_missing_share", sa.Float(), nullable=False),
        sa.Column("missing_drift", sa.Boolean(), nullable=False),
        sa.Column("unseen_categories", sa.Integer(), nullable=False),
        sa.Column("histogram", sa.JSON()),
        sa.PrimaryKeyConstraint("report_id", "position", name="pk_drift_features"),
    )

    op.create_table(
        "outliers",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("window_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("time", TIME, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("contributions", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("report_id", "request_id", "row_index", name="pk_outliers"),
    )
    op.create_index("ix_outliers_model_time", "outliers", ["model", sa.text("time DESC")])
    op.create_index("ix_outliers_window_id", "outliers", ["window_id"])


def downgrade() -> None:
    for table in ("outliers", "drift_features", "drift_reports", "drift_windows"):
        op.drop_table(table)
    op.drop_table("drift_references")
