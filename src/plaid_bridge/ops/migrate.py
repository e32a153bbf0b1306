"""The database schema: every table registered in one metadata, and Alembic driven from the
settings (`plaid-bridge db upgrade`, the readiness probe, test setup).

A new table is a model in its domain's `models.py`, imported here so that Alembic's autogenerate
and the schema test see it, and a migration in `migrations/versions/`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from plaid_bridge.activity.audit import AuditLog
from plaid_bridge.activity.events import Event
from plaid_bridge.connections.models import ItemRemoval, PlaidAccount, PlaidConnection
from plaid_bridge.db import Base
from plaid_bridge.ops.models import WorkerHeartbeat
from plaid_bridge.sync.models import SyncRequest, SyncRun
from plaid_bridge.transactions.models import PlaidTransaction
from plaid_bridge.webhooks.models import WebhookEvent

__all__ = [
    "TABLES",
    "alembic_config",
    "current_revision",
    "head_revision",
    "metadata",
    "upgrade",
]

TABLES = (
    AuditLog,
    Event,
    ItemRemoval,
    PlaidAccount,
    PlaidConnection,
    PlaidTransaction,
    SyncRequest,
    SyncRun,
    WebhookEvent,
    WorkerHeartbeat,
)
"""Every model, so that importing this module registers the whole schema in `metadata`."""
metadata = Base.metadata

ROOT = Path(__file__).resolve().parents[3]


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the repository's `migrations/` and the given database."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent)."""
    command.upgrade(alembic_config(database_url), revision)


@cache
def head_revision() -> str | None:
    """The newest revision in `migrations/` (read once per process)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


VERSION_TABLE = "alembic_version"


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None before the first migration).

    Read straight from Alembic's version table: the readiness probe asks on every call, and
    Alembic's own MigrationContext logs two INFO lines each time it is set up.
    """
    async with engine.connect() as connection:
        return await connection.run_sync(_read_revision)


def _read_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    heads = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(heads) > 1:
        raise RuntimeError(f"the database has several migration heads: {', '.join(heads)}")
    return heads[0] if heads else None
