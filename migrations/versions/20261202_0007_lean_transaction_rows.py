"""Leaner transaction rows: a partial change index, and Plaid's raw JSON kept as text.

The feed walks rows a client already holds by `change_seq`; such a row has changed since it was
created (`change_seq > created_seq`). Indexing only those rows spares the bulk of the store (rows
as a first sync wrote them) one index write each.

`raw` is Plaid's object as the service received and checked it; as `json` the server parsed every
row once more on the way in. As text it is stored and served as is. On PostgreSQL the type
change rewrites the table (under an exclusive lock): on a large store, upgrade in a quiet hour.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHANGED = "change_seq > created_seq"


def upgrade() -> None:
    with op.batch_alter_table("plaid_transactions", schema=None) as batch_op:
        batch_op.alter_column(
            "raw",
            existing_type=sa.JSON(),
            type_=sa.Text(),
            existing_nullable=False,
            postgresql_using="raw::text",
        )
        batch_op.create_index(
            "ix_plaid_transactions_changed",
            ["connection_id", "change_seq", "transaction_id"],
            unique=False,
            postgresql_where=sa.text(_CHANGED),
            sqlite_where=sa.text(_CHANGED),
        )
        batch_op.drop_index("ix_plaid_transactions_connection_id_change_seq_transaction_id")


def downgrade() -> None:
    with op.batch_alter_table("plaid_transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_plaid_transactions_connection_id_change_seq_transaction_id",
            ["connection_id", "change_seq", "transaction_id"],
            unique=False,
        )
        batch_op.drop_index("ix_plaid_transactions_changed")
        batch_op.alter_column(
            "raw",
            existing_type=sa.Text(),
            type_=sa.JSON(),
            existing_nullable=False,
            postgresql_using="raw::json",
        )
