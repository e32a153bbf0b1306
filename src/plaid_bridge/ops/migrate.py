"""The database schema: every table registered in one metadata, and Alembic driven from the
settings (`plaid-bridge db upgrade`, the readiness probe, test setup).

A new table is a model in its domain's `models.py`, imported here so that Alembic's autogenerate
and the schema test see it, and a migration in `migrations/versions/`.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from alembic.config import Config

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
VERSIONS = ROOT / "migrations" / "versions"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the repository's `migrations/` and the given database. Alembic is
    imported here, by the commands that migrate, never by a process that only serves."""
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


@cache
def head_revision() -> str | None:
    """The newest revision in `migrations/` (read once per process): the one no script names
    as its `down_revision`. Read from the scripts' own assignments because the readiness probe
    asks for it and loading Alembic would add a tenth of a second to every start; a test holds
    it to Alembic's answer. Raises RuntimeError when the scripts have several heads."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in VERSIONS.glob("*.py"):
        names = _revision_names(script)
        revisions.add(str(names["revision"]))
        down = names.get("down_revision")
        parents.update(down if isinstance(down, tuple) else () if down is None else (str(down),))
    heads = sorted(revisions - parents)
    if len(heads) > 1:
        raise RuntimeError(f"migrations/ has several heads: {', '.join(heads)}")
    return heads[0] if heads else None


def _revision_names(script: Path) -> dict[str, object]:
    """A migration's module-level `revision` and `down_revision` literals."""
    found: dict[str, object] = {}
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        target: ast.expr
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and value:
            found[target.id] = ast.literal_eval(value)
    return found


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
