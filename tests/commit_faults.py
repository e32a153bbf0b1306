"""Real faults at commit time, on the service's own engine: the database session killed just before
its COMMIT (PostgreSQL: `pg_terminate_backend` from another session), a deferred foreign key left
violated (SQLite: the COMMIT refuses), or a COMMIT that takes a while. Nothing of the service is
replaced: the faults are SQLAlchemy's commit event doing real things to the real database."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_only

from plaid_bridge.db import sync_url

# A plaid_accounts row whose connection does not exist: refused when the transaction commits.
_DANGLING_ACCOUNT = (
    "INSERT INTO plaid_accounts (id, connection_id, account_id, name, type, revoked, raw, "
    "created_at, updated_at) VALUES ('dangling', 'no-such-connection', 'dangling', 'x', 'x', "
    "0, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
)


class CommitFaults:
    """`fail_next(n)`: the next n commits on the engine fail; `delay_commits(seconds)`: every
    commit from now on takes that much longer."""

    def __init__(self, engine: AsyncEngine, database_url: str) -> None:
        self._engine = engine.sync_engine
        self._url = database_url
        self._failures = 0
        self._delay = 0.0
        self.failed = 0
        event.listen(self._engine, "commit", self._on_commit)

    def close(self) -> None:
        event.remove(self._engine, "commit", self._on_commit)

    def fail_next(self, count: int = 1) -> None:
        self._failures = count

    def delay_commits(self, seconds: float) -> None:
        self._delay = seconds

    def _on_commit(self, connection: Connection) -> None:
        if self._delay:
            # Awaited on the service's event loop: other requests go on meanwhile.
            await_only(asyncio.sleep(self._delay))
        if self._failures <= 0:
            return
        self._failures -= 1
        self.failed += 1
        if self._engine.dialect.name == "postgresql":
            self._terminate(connection)
        else:
            connection.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
            connection.exec_driver_sql(_DANGLING_ACCOUNT)

    def _terminate(self, connection: Connection) -> None:
        driver: Any = connection.connection.driver_connection
        pid = driver.info.backend_pid
        admin = create_engine(sync_url(self._url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as other:
                ended = other.execute(
                    text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}
                ).scalar()
            assert ended is True
        finally:
            admin.dispose()
