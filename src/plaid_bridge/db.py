"""Database engine, sessions and the declarative base.

One transaction per request or task: `Database.transaction()` commits on success and rolls back on
any error; services and repositories only flush.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware (naive datetimes never enter the database)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with explicit constraint names (stable Alembic diffs on both databases)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        # Plaid money has at most a few decimals: the shortest float repr round-trips it exactly.
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plain_json(value: Any) -> Any:
    """A JSON-like value with Decimals as numbers (as `dumps_json` writes them), for responses."""
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_json(item) for item in value]
    if isinstance(value, Decimal):
        return _json_default(value)
    return value


def dumps_json(value: object) -> str:
    """JSON for stored documents: Decimals and datetimes allowed, compact."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def async_url(url: str) -> URL:
    """The async-driver form of a URL (`sqlite` -> aiosqlite, `postgresql` -> psycopg)."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def sync_url(url: str) -> URL:
    """The synchronous-driver form of a configured URL (used by Alembic)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return parsed.set(drivername="sqlite")
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a file-based SQLite database (e.g. `var/`) if it is missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _stop_sqlite_connection(dbapi_connection: Any) -> None:
    """Terminate an aiosqlite connection (one invalidated by a cancelled statement) by stopping
    its thread, which closes the SQLite connection and ends; nothing is awaited.

    SQLAlchemy's own terminate awaits a graceful close in a shielded task and, when that await
    is cancelled again (an anyio cancel scope repeats its cancellation until it exits), also
    stops the thread: the two race, and the close task can be left waiting forever on a thread
    that has ended. `asyncio.run` then never returns after a stop. SQLite has no server to say
    goodbye to, so the stop alone loses nothing."""
    dbapi_connection.driver_connection.stop()


DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_RECYCLE_SECONDS = 1800.0


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
    pool_recycle: float = DEFAULT_POOL_RECYCLE_SECONDS,
) -> AsyncEngine:
    """An async engine for the configured URL, with foreign keys and WAL on SQLite.

    PostgreSQL gets a fixed pool of `pool_size` sessions: no overflow, since opening a session
    under load costs more than waiting for a pooled one, and no ping per checkout (a round trip
    on every transaction). Liveness comes from recycling sessions older than `pool_recycle`
    seconds and from the disconnect handling of SQLAlchemy: a statement failing on a dead
    session invalidates the pool, so the next checkout opens fresh sessions (and the webhook
    path retries such a failure once, see `webhooks/group_commit.py`).

    `hide_parameters`: a failed statement's error (and so its logged traceback) names the SQL
    but never the bound values, which can be tokens, bodies or personal data."""
    ensure_sqlite_dir(url)
    target = async_url(url)
    kwargs: dict[str, Any] = {
        "echo": echo,
        "json_serializer": dumps_json,
        "hide_parameters": True,
    }
    if target.get_backend_name() == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_recycle=pool_recycle)
    engine = create_async_engine(target, **kwargs)
    if target.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        engine.dialect.do_terminate = _stop_sqlite_connection  # type: ignore[method-assign]
    return engine


class Database:
    """The engine plus a session factory; the app and the worker each hold one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        pool_recycle: float = DEFAULT_POOL_RECYCLE_SECONDS,
    ) -> Database:
        return cls(create_engine(url, pool_size=pool_size, pool_recycle=pool_recycle))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed if the block succeeds, else rolled back.

        The session is closed shielded from cancellation: a cancelled task (a client gone, a
        worker stopping) still rolls back and returns its connection, and on SQLite releases the
        write lock at once instead of when the garbage collector finds the connection.
        """
        session = self.sessions()
        try:
            async with session.begin():
                yield session
        finally:
            with anyio.CancelScope(shield=True):
                await session.close()

    async def dispose(self) -> None:
        await self.engine.dispose()


def dialect_name(session: AsyncSession) -> str:
    """The session's database dialect ("postgresql" or "sqlite")."""
    bind = session.get_bind()
    return bind.dialect.name


def upsert(session: AsyncSession, model: type[Base]) -> Any:
    """`INSERT` with `on_conflict_do_update`/`do_nothing` for the session's database."""
    if dialect_name(session) == "postgresql":
        return postgresql_insert(model)
    return sqlite_insert(model)
