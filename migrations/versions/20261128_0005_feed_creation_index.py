"""The change feed walks rows new to a client in the order of their creation.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("plaid_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_transactions_connection_id_created_seq_transaction_id"),
            ["connection_id", "created_seq", "transaction_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("plaid_transactions", schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f("ix_plaid_transactions_connection_id_created_seq_transaction_id")
        )
