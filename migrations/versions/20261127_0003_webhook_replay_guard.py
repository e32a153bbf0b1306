"""Replayed webhooks stored once; stale status webhooks recognised.

The inbox keeps each delivery's verified token (unique) and its signing time; connections keep
when their status last changed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plaid_webhook_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_plaid_webhook_events_token_sha256"), ["token_sha256"], unique=True
        )

    with op.batch_alter_table("plaid_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("plaid_connections", schema=None) as batch_op:
        batch_op.drop_column("status_changed_at")

    with op.batch_alter_table("plaid_webhook_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_webhook_events_token_sha256"))
        batch_op.drop_column("signed_at")
        batch_op.drop_column("token_sha256")
