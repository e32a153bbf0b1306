"""Removals at Plaid owed durably: one row per removed Item until Plaid confirms.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plaid_item_removals",
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_plaid_item_removals")),
    )
    with op.batch_alter_table("plaid_item_removals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_item_removals_not_before"), ["not_before"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("plaid_item_removals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_item_removals_not_before"))
    op.drop_table("plaid_item_removals")
