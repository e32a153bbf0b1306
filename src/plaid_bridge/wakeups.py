"""Wake-ups between processes: PostgreSQL LISTEN/NOTIFY, so an external worker starts on a new
webhook or sync request at once instead of at its next poll.

The inserting side calls `notify_inbox` or `notify_sync` in the transaction that inserts: the
notification is delivered when (and only if) that transaction commits, so a worker woken by it
always finds the row. The worker keeps one dedicated connection LISTENing (`listen`), opened
again after a failure; polling stays as the fallback, so a lost notification only costs the
poll interval. On SQLite both calls do nothing: its worker runs in the API process and is woken
by an in-process event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import anyio
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from plaid_bridge.db import dialect_name

__all__ = ["INBOX", "SYNC", "listen", "notify_inbox", "notify_sync"]

logger = logging.getLogger("plaid_bridge.wakeups")

INBOX = "plaid_bridge_inbox"
"""A webhook was stored in the inbox."""
SYNC = "plaid_bridge_sync"
"""A sync was requested."""

_RETRY_SECONDS = 2.0


async def notify_inbox(session: AsyncSession | AsyncConnection) -> None:
    """Wake listening workers for a new inbox row, when the transaction commits."""
    await _notify(session, INBOX)


async def notify_sync(session: AsyncSession) -> None:
    """Wake listening workers for a new sync request, when the session's transaction commits."""
    await _notify(session, SYNC)


async def _notify(session: AsyncSession | AsyncConnection, channel: str) -> None:
    # Notifications of one channel within a transaction are folded into one.
    dialect = (
        session.dialect.name if isinstance(session, AsyncConnection) else dialect_name(session)
    )
    if dialect == "postgresql":
        await session.execute(text(f"NOTIFY {channel}"))


async def listen(url: URL, events: Mapping[str, asyncio.Event]) -> None:
    """Until cancelled: LISTEN on each channel of `events` and set its event on every
    notification. Each (re)connection also sets every event once, since notifications sent while
    not listening are lost. A failure is logged and the connection opened again shortly."""
    import psycopg  # only PostgreSQL deployments listen

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                for channel in events:
                    await conn.execute(f"LISTEN {channel}")
                for event in events.values():
                    event.set()
                async for notification in conn.notifies():
                    events[notification.channel].set()
        except Exception as error:  # polling covers the gap; the worker must go on
            logger.warning("wakeups.listen_failed", extra={"error_type": type(error).__name__})
        await anyio.sleep(_RETRY_SECONDS)
