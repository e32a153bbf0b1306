"""Core tables: connections, accounts, audit log and platform events.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 23:22:27.152436
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "plaid_audit_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("plaid_request_id", sa.String(length=128), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plaid_audit_logs")),
    )
    with op.batch_alter_table("plaid_audit_logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plaid_audit_logs_item_id"), ["item_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_plaid_audit_logs_org_id_id"), ["org_id", "id"], unique=False
        )

    op.create_table(
        "plaid_connections",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("institution_id", sa.String(length=64), nullable=True),
        sa.Column("institution_name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("consent_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("new_accounts_available", sa.Boolean(), nullable=False),
        sa.Column("initial_update_complete", sa.Boolean(), nullable=False),
        sa.Column("historical_update_complete", sa.Boolean(), nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plaid_connections")),
        sa.UniqueConstraint("item_id", name=op.f("uq_plaid_connections_item_id")),
    )
    with op.batch_alter_table("plaid_connections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plaid_connections_org_id"), ["org_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_plaid_connections_org_id_user_id_institution_id"),
            ["org_id", "user_id", "institution_id"],
            unique=False,
        )

    op.create_table(
        "plaid_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plaid_events")),
    )
    with op.batch_alter_table("plaid_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_events_item_id_type_created_at"),
            ["item_id", "type", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_plaid_events_org_id_id"), ["org_id", "id"], unique=False
        )

    op.create_table(
        "plaid_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("official_name", sa.String(length=255), nullable=True),
        sa.Column("mask", sa.String(length=16), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("subtype", sa.String(length=64), nullable=True),
        sa.Column("balance_available", sa.Numeric(precision=24, scale=6), nullable=True),
        sa.Column("balance_current", sa.Numeric(precision=24, scale=6), nullable=True),
        sa.Column("balance_limit", sa.Numeric(precision=24, scale=6), nullable=True),
        sa.Column("iso_currency_code", sa.String(length=8), nullable=True),
        sa.Column("unofficial_currency_code", sa.String(length=16), nullable=True),
        sa.Column("verification_status", sa.String(length=64), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("balances_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["plaid_connections.id"],
            name=op.f("fk_plaid_accounts_connection_id_plaid_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plaid_accounts")),
        sa.UniqueConstraint("account_id", name=op.f("uq_plaid_accounts_account_id")),
    )
    with op.batch_alter_table("plaid_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plaid_accounts_connection_id"), ["connection_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("plaid_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_accounts_connection_id"))

    op.drop_table("plaid_accounts")
    with op.batch_alter_table("plaid_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_events_org_id_id"))
        batch_op.drop_index(batch_op.f("ix_plaid_events_item_id_type_created_at"))

    op.drop_table("plaid_events")
    with op.batch_alter_table("plaid_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_connections_org_id_user_id_institution_id"))
        batch_op.drop_index(batch_op.f("ix_plaid_connections_org_id"))

    op.drop_table("plaid_connections")
    with op.batch_alter_table("plaid_audit_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plaid_audit_logs_org_id_id"))
        batch_op.drop_index(batch_op.f("ix_plaid_audit_logs_item_id"))

    op.drop_table("plaid_audit_logs")
