"""Many Items at once: the sync claim honours its limit, and the worker's sync pool starts the
next due sync while another is still running, yet stops all of them at once on stop."""

from __future__ import annotations

import asyncio

import anyio
import httpx
import pytest
from sqlalchemy import func, select, text

from plaid_bridge.db import utcnow
from plaid_bridge.sync.models import SyncRequest, SyncRequestState, SyncRun
from plaid_bridge.sync.queue import claim_due
from plaid_bridge.sync.requests import request_sync
from plaid_bridge.worker import Worker, stop_within
from tests.conftest import Api
from tests.waiting import eventually

pytestmark = pytest.mark.anyio
WAIT_SECONDS = 60.0


async def test_a_claim_never_takes_more_than_its_limit(api: Api) -> None:
    database = api.services.database
    async with database.transaction() as session:
        session.add_all(
            SyncRequest(item_id=f"item-{i:03}", reason="test", not_before=utcnow())
            for i in range(150)
        )
    claimed: dict[str, int] = {}

    async def claim(worker_id: str) -> None:
        claimed[worker_id] = len(await claim_due(api.services, worker_id, 20))

    async with anyio.create_task_group() as group:
        for n in range(4):
            group.start_soon(claim, f"w{n}")
    async with database.transaction() as session:
        running = dict(
            (
                await session.execute(
                    select(SyncRequest.claimed_by, func.count())
                    .where(SyncRequest.state == SyncRequestState.RUNNING.value)
                    .group_by(SyncRequest.claimed_by)
                )
            ).all()
        )
    assert claimed == running  # what each claim returned is what it marked
    assert claimed == {f"w{n}": 20 for n in range(4)}


async def test_the_pool_starts_the_next_sync_while_one_is_slow(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    slow = (await api.connect())["itemId"]
    quick = (await api.connect())["itemId"]
    database = api.services.database
    async with database.transaction() as session:
        await session.execute(text("DELETE FROM plaid_sync_requests"))
    fault = {"endpoint": "/transactions/sync", "itemId": slow, "latencyMs": 30_000, "count": 5}
    assert (await emulator_control.post("/emulator/faults", json=fault)).status_code == 201
    worker = Worker(api.services, worker_id="pool", sync_concurrency=4)
    async with database.transaction() as session:
        await request_sync(session, slow, reason="test")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(stop))

    async def state_of(item_id: str) -> str | None:
        async with database.transaction() as session:
            found: str | None = await session.scalar(
                select(SyncRequest.state).where(SyncRequest.item_id == item_id)
            )
            return found

    async def runs_of(item_id: str) -> int:
        async with database.transaction() as session:
            return int(
                await session.scalar(
                    select(func.count()).select_from(SyncRun).where(SyncRun.item_id == item_id)
                )
                or 0
            )

    async def slow_is_running() -> bool:
        return await state_of(slow) == SyncRequestState.RUNNING.value

    async def quick_has_run() -> bool:
        return await runs_of(quick) > 0

    try:
        await eventually(slow_is_running, "the slow sync to start", within=WAIT_SECONDS)
        # Asked for while the slow one runs: a batch-by-batch loop would wait for it.
        async with database.transaction() as session:
            await request_sync(session, quick, reason="test")
        await eventually(quick_has_run, "the quick sync", within=WAIT_SECONDS)
        assert await state_of(slow) == SyncRequestState.RUNNING.value
        assert await runs_of(slow) == 0
    finally:
        await stop_within(task, stop, 10.0)
        await emulator_control.delete("/emulator/faults")
    # Stopping interrupted the slow run and handed its request back, due at once.
    assert await state_of(slow) == SyncRequestState.QUEUED.value
    assert await runs_of(slow) == 0
