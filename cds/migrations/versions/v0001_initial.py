"""The schema of the first release: every table of ``cds/state.py`` plus APScheduler's job table.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Written out in full (never derived from the models at run time) so that it stays what it was when later
revisions change the models; ``tests/cds/test_migrations.py`` checks head against the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "ov_apscheduler_jobs": ["next_run_time"],
    "ov_feedback": ["card_uuid", "service_id"],
    "ov_finding": ["drug_rxnorm", "kind", "note_id", "patient_id"],
    "ov_jti": ["expires_at"],
}


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # APScheduler 3.x's SQLAlchemyJobStore table (it would create it itself, racing between replicas)
    op.create_table(
        "ov_apscheduler_jobs",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ov_card",
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=128), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_table(
        "ov_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service_id", sa.String(length=128), nullable=False),
        sa.Column("card_uuid", sa.String(length=64), nullable=False),
        sa.Column("card_topic", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("override_code", sa.String(length=64), nullable=True),
        sa.Column("override_display", sa.Text(), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("accepted_suggestions", sa.JSON(), nullable=False),
        sa.Column("outcome_ts", sa.String(length=40), nullable=True),
        _when("received_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ov_finding",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("patient_id", sa.String(length=128), nullable=False),
        sa.Column("note_id", sa.String(length=128), nullable=False),
        sa.Column("drug_rxnorm", sa.String(length=32), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("written", sa.Integer(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "ov_jti",
        sa.Column("issuer", sa.String(length=256), nullable=False),
        sa.Column("jti", sa.String(length=256), nullable=False),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("issuer", "jti"),
    )
    op.create_table(
        "ov_lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "ov_processed",
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("input_key", sa.String(length=256), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        _when("processed_at"),
        sa.PrimaryKeyConstraint("task", "version", "input_key"),
    )
    op.create_table(
        "ov_run",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        _when("started_at"),
        _when("ended_at", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "ov_watermark",
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("resource_type"),
    )
    for table, columns in _INDEXES.items():
        for column in columns:
            op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def downgrade() -> None:
    for table, columns in _INDEXES.items():
        for column in columns:
            op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
    for table in ("ov_watermark", "ov_run", "ov_processed", "ov_lease", "ov_jti", "ov_finding", "ov_feedback",
                  "ov_card", "ov_apscheduler_jobs"):
        op.drop_table(table)
