"""The old NestJS module's `plaid_connections` table, as `plaid-bridge import-legacy` reads it.

This is the one place that names its columns. The old module used TypeORM's default naming:
camelCase columns, which SQL must quote (`"itemId"`). docs/migrating-from-nestjs.md lists them
for operators; a database with other names can be read through a view with these.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

from plaid_bridge.connections.models import ConnectionStatus

__all__ = ["LEGACY_CONNECTIONS", "LEGACY_STATUS_MAP", "LegacyStatus", "aware"]

# A metadata of its own: this table lives in the old database, never in Alembic's schema.
LEGACY_CONNECTIONS = Table(
    "plaid_connections",
    MetaData(),
    Column("id", String, primary_key=True),  # the old row's id (uuid), named in the report
    Column("userId", String),  # the user who linked the bank
    Column("orgId", String),  # the organisation (tenant); NULL in rows from before orgs
    Column("itemId", String),  # Plaid's item id
    Column("accessToken", Text),  # base64(salt(64) | iv(16) | tag(16) | ciphertext), SPEC §9
    Column("institutionId", String),
    Column("institutionName", String),
    Column("status", String),  # LegacyStatus
    Column("lastSyncedAt", DateTime(timezone=True)),
)


class LegacyStatus(enum.StrEnum):
    """The old module's statuses."""

    ACTIVE = "ACTIVE"
    ERROR = "ERROR"  # the old module's only error state: Plaid wanted the user back
    INACTIVE = "INACTIVE"  # disconnected by the user
    PENDING = "PENDING"  # linked, state unknown: confirmed with /item/get on import


LEGACY_STATUS_MAP: dict[LegacyStatus, ConnectionStatus] = {
    LegacyStatus.ACTIVE: ConnectionStatus.ACTIVE,
    LegacyStatus.ERROR: ConnectionStatus.LOGIN_REQUIRED,
    LegacyStatus.INACTIVE: ConnectionStatus.REVOKED,
    LegacyStatus.PENDING: ConnectionStatus.ACTIVE,
}
"""The status a connection gets here, unless Plaid's `/item/get` reports an error that decides
otherwise (see `legacy_import`)."""


def aware(value: datetime | None) -> datetime | None:
    """A timestamp read from the old table as aware UTC (a naive one is taken as UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
