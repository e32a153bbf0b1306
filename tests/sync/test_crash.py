"""A worker process killed in the middle of an update: the previous cursor and data stay, and the
next run gives what an uninterrupted one would have."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import httpx
import pytest
from sqlalchemy import text

from plaid_bridge.db import Database
from plaid_bridge.sync.engine import Outcome, sync_item
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, UNREACHABLE_WEBHOOK, Api
from tests.sync.conftest import PAGE_SIZE
from tests.sync.emulator_faults import advance, fault, sync_calls, wait_for_calls
from tests.sync.store import cursor_of, ledger, runs, stored

pytestmark = pytest.mark.anyio

WORKER = """
import sys, anyio
from plaid_bridge.services import build_services
from plaid_bridge.config import load_settings
from plaid_bridge.sync.engine import sync_item

async def main() -> None:
    services = build_services(load_settings())
    await sync_item(services, sys.argv[1], trigger="crash-test")

anyio.run(main)
"""


async def _dead_session_gone(database: Database) -> None:
    """PostgreSQL ends a killed client's session (and its Item lock) a moment after the kill,
    once it reads the closed socket: wait for that, bounded."""
    if database.dialect != "postgresql":
        return
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with anyio.fail_after(10):
        while True:
            async with database.transaction() as session:
                if not await session.scalar(held):
                    return
            await anyio.sleep(0.02)


async def test_killed_worker_leaves_the_previous_state(
    api: Api, emulator_control: httpx.AsyncClient, tmp_path: Path
) -> None:
    services = api.services
    item_id: str = (await api.connect())["itemId"]
    assert (await sync_item(services, item_id, trigger="t")).outcome is Outcome.NOT_READY
    assert (await sync_item(services, item_id, trigger="t")).outcome is Outcome.SUCCESS
    cursor = await cursor_of(services.database, item_id)
    before = await stored(services.database, item_id)
    await advance(emulator_control, item_id, add=30, modify=3, post=2, remove=2)
    calls = await sync_calls(emulator_control, item_id)
    await fault(emulator_control, item_id, latencyMs=60_000, page=4)

    settings = services.settings
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": settings.plaid_host,
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "PLAID_WEBHOOK_URL": UNREACHABLE_WEBHOOK,
        "SYNC_PAGE_SIZE": str(PAGE_SIZE),
        "VAR_DIR": str(tmp_path / "var"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    process = await anyio.open_process(
        [sys.executable, "-c", WORKER, item_id], cwd=tmp_path, env=environment
    )
    async with process:
        try:
            await wait_for_calls(emulator_control, item_id, calls + 3)  # pages 1-3 staged
            assert process.returncode is None
        finally:
            process.send_signal(signal.SIGKILL)
            with anyio.fail_after(10):
                await process.wait()
    await emulator_control.delete("/emulator/faults")
    await _dead_session_gone(services.database)

    assert await cursor_of(services.database, item_id) == cursor
    assert await stored(services.database, item_id) == before
    assert [run.outcome for run in await runs(services.database, item_id)] == [
        "not_ready",
        "success",
    ]
    resumed = await sync_item(services, item_id, trigger="after-crash")
    assert resumed.outcome is Outcome.SUCCESS, resumed
    assert await stored(services.database, item_id) == await ledger(emulator_control, item_id)
