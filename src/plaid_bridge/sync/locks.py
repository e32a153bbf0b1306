"""Per-Item exclusion for the sync engine: two syncs of one Item never overlap.

Within a process a set of held keys says who runs; across processes PostgreSQL's transaction-level
advisory lock does (released by commit, rollback or a dead connection, so a killed worker never
leaves it held). SQLite has one writer and is for single-process development: the in-process lock,
plus the engine's check that the stored cursor did not move, is enough there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.db import Database, dialect_name

_held: set[tuple[str, str]] = set()


@contextmanager
def local_lock(database: Database, item_id: str) -> Iterator[bool]:
    """Try to take the Item's lock in this process; yields whether it was taken (never waits)."""
    key = (database.engine.url.render_as_string(hide_password=True), item_id)
    if key in _held:
        yield False
        return
    _held.add(key)
    try:
        yield True
    finally:
        _held.discard(key)


def advisory_key(item_id: str) -> int:
    """A stable signed 64-bit key for the Item (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.blake2b(b"plaid-bridge:sync:" + item_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def try_database_lock(session: AsyncSession, item_id: str) -> bool:
    """Take the Item's lock for the session's transaction if free (PostgreSQL); True on SQLite."""
    if dialect_name(session) != "postgresql":
        return True
    taken = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": advisory_key(item_id)}
    )
    return bool(taken)
