"""Webhook inbox, sync request queue, sync runs, the transaction store, the feed sequence.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 23:37:00.613165
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "plaid_sync_requests",
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rerun", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_plaid_sync_requests")),
    )
    with op.batch_alter_table("plaid_sync_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_sync_requests_state_not_before"),
            ["state", "not_before"],
            unique=False,
        )

    op.create_table(
        "plaid_sync_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("trigger", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("modified", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("plaid_request_ids", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plaid_sync_runs")),
    )
    with op.batch_alter_table("plaid_sync_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_sync_runs_item_id_id"), ["item_id", "id"], unique=False
        )

    op.create_table(
        "plaid_webhook_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("webhook_type", sa.String(length=64), nullable=True),
        sa.Column("webhook_code", sa.String(length=64), nullable=True),
        sa.Column("item_id", sa.String(length=128), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plaid_webhook_events")),
    )
    with op.batch_alter_table("plaid_webhook_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_webhook_events_item_id_id"), ["item_id", "id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_plaid_webhook_events_status_id"), ["status", "id"], unique=False
        )

    op.create_table(
        "plaid_transactions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("transaction_id", sa.String(length=128), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("amount", sa.Numeric(precision=24, scale=6), nullable=False),
        sa.Column("iso_currency_code", sa.String(length=8), nullable=True),
        sa.Column("unofficial_currency_code", sa.String(length=16), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("authorized_date", sa.Date(), nullable=True),
        sa.Column("datetime", sa.DateTime(timezone=True), nullable=True),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("merchant_name", sa.String(length=512), nullable=True),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("pending_transaction_id", sa.String(length=128), nullable=True),
        sa.Column("category", sa.JSON(), nullable=True),
        sa.Column("payment_channel", sa.String(length=32), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("removed", sa.Boolean(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["plaid_connections.id"],
            name=op.f("fk_plaid_transactions_connection_id_plaid_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plaid_transactions")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_plaid_transactions_transaction_id")),
    )
    with op.batch_alter_table("plaid_transactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_transactions_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_plaid_transactions_connection_id_change_seq_transaction_id"),
            ["connection_id", "change_seq", "transaction_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_plaid_transactions_connection_id_date_id"),
            ["connection_id", "date", "id"],
            unique=False,
        )

    with op.batch_alter_table("plaid_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("change_seq", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:

    with op.batch_alter_table("plaid_connections", schema=None) as batch_op:
        batch_op.drop_column("change_seq")

    with op.batch_alter_table("plaid_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_transactions_connection_id_date_id"))
        batch_op.drop_index(
            batch_op.f("ix_plaid_transactions_connection_id_change_seq_transaction_id")
        )
        batch_op.drop_index(batch_op.f("ix_plaid_transactions_account_id"))

    op.drop_table("plaid_transactions")
    with op.batch_alter_table("plaid_webhook_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_webhook_events_status_id"))
        batch_op.drop_index(batch_op.f("ix_plaid_webhook_events_item_id_id"))

    op.drop_table("plaid_webhook_events")
    with op.batch_alter_table("plaid_sync_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_sync_runs_item_id_id"))

    op.drop_table("plaid_sync_runs")
    with op.batch_alter_table("plaid_sync_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_sync_requests_state_not_before"))

    op.drop_table("plaid_sync_requests")
