"""Worker heartbeats, for readiness and monitoring.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plaid_worker_heartbeats",
        sa.Column("worker_id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_plaid_worker_heartbeats")),
    )
    op.create_index(
        op.f("ix_plaid_worker_heartbeats_role_beat_at"),
        "plaid_worker_heartbeats",
        ["role", "beat_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_plaid_worker_heartbeats_role_beat_at"), table_name="plaid_worker_heartbeats"
    )
    op.drop_table("plaid_worker_heartbeats")
