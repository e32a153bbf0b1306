"""A statement cancelled on SQLite (a stopping worker interrupting its syncs, a client gone)
leaves nothing running: its connection's thread ends and no task is left waiting on it, so the
event loop (and the process, after SIGTERM) can end."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from sqlalchemy import event, text

from plaid_bridge.db import Database

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the event loop the app and the worker run on


async def test_a_cancelled_sqlite_statement_leaves_no_task_or_thread_behind(
    tmp_path: Path,
) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'cancel.db'}")
    entered, release = threading.Event(), threading.Event()

    def hold(_value: int) -> int:  # runs in the connection's thread, inside the statement
        entered.set()
        release.wait(60)
        return 1

    def add_hold(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("hold", 1, hold)

    event.listen(database.engine.sync_engine, "connect", add_hold)
    tasks_before = asyncio.all_tasks()
    scope = anyio.CancelScope()

    async def held_statement() -> None:
        with scope:
            async with database.transaction() as session:
                await session.execute(text("SELECT hold(1)"))

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(held_statement)
            assert await anyio.to_thread.run_sync(entered.wait, 60)
            threads = [t for t in threading.enumerate() if "_connection_worker" in t.name]
            # Cancelled the way a stopping worker interrupts a sync pass, while the statement
            # runs; the cancellation is repeated until the statement's task leaves the scope.
            scope.cancel()
        assert scope.cancelled_caught
    finally:
        release.set()
    for thread in threads:
        await anyio.to_thread.run_sync(thread.join, 60)
        assert not thread.is_alive()
    await database.dispose()
    await asyncio.sleep(0)  # callbacks the ended thread scheduled have run
    left = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
    left.discard(asyncio.current_task())
    assert left == set()
