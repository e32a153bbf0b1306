"""Sync requests through the queue: coalescing, exactly one more pass, backoff, leases, the
reconciler and the trigger endpoint."""

from __future__ import annotations

from datetime import timedelta

import anyio
import httpx
import pytest
from sqlalchemy import select, update

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.sync.models import SyncRequest
from plaid_bridge.sync.queue import enqueue_stale, process_due
from plaid_bridge.sync.requests import request_sync
from tests.conftest import Api
from tests.sync.emulator_faults import advance, fault
from tests.sync.store import drain, ledger, pending_requests, runs, stored

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def connected_and_drained(api: Api) -> str:
    """A connected Item whose queued initial sync (not ready, then done) has run."""
    item_id: str = (await api.connect())["itemId"]
    await drain(api.services)
    assert [run.outcome for run in await runs(api.services.database, item_id)] == [
        "not_ready",
        "success",
    ]
    return item_id


async def request_row(api: Api, item_id: str) -> SyncRequest | None:
    async with api.services.database.transaction() as session:
        return await session.get(SyncRequest, item_id)


async def test_exchange_queues_the_initial_sync(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await connected_and_drained(api)
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)
    assert (await runs(api.services.database, item_id))[0].trigger == "initial"


async def test_twenty_concurrent_triggers_give_one_run_plus_at_most_one_more(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await connected_and_drained(api)
    await advance(emulator_control, item_id, add=12, modify=2, post=1, remove=1)
    # The first run lasts longer than the burst of triggers takes to land.
    await fault(emulator_control, item_id, latencyMs=2_000, page=1)
    before = len(await runs(api.services.database, item_id))
    statuses: list[int] = []

    async def trigger() -> None:
        response = await api.client.post(
            f"{BASE}/connections/{item_id}/sync", headers=api.auth(role="MEMBER")
        )
        statuses.append(response.status_code)
        assert response.json() == {"syncRequested": True}

    async def worker(name: str) -> None:
        for _ in range(10):
            await process_due(api.services, worker_id=name, limit=5)
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(trigger)
        group.start_soon(worker, "worker-a")
        group.start_soon(worker, "worker-b")
    await drain(api.services)

    assert statuses == [202] * 20
    new_runs = (await runs(api.services.database, item_id))[before:]
    assert [run.outcome for run in new_runs] in (["success"], ["success", "success"])
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_a_request_during_a_run_causes_exactly_one_more_pass(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await connected_and_drained(api)
    before = len(await runs(api.services.database, item_id))
    await fault(emulator_control, item_id, latencyMs=400, page=1)
    async with api.services.database.transaction() as session:
        await request_sync(session, item_id, reason="test")

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: process_due(api.services, worker_id="w", limit=1))
        with anyio.fail_after(10):
            while True:
                row = await request_row(api, item_id)
                if row is not None and row.state == "RUNNING":
                    break
                await anyio.sleep(0.02)
        for _ in range(5):
            async with api.services.database.transaction() as session:
                await request_sync(session, item_id, reason="webhook")

    row = await request_row(api, item_id)
    assert row is not None
    assert (row.state, row.rerun, row.claimed_by) == ("QUEUED", False, None)
    assert await process_due(api.services, worker_id="w", limit=1) == 1
    assert await request_row(api, item_id) is None
    assert await process_due(api.services, worker_id="w", limit=1) == 0
    assert [run.outcome for run in (await runs(api.services.database, item_id))[before:]] == [
        "success",
        "success",
    ]


async def test_failures_back_off_then_the_request_is_abandoned(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await connected_and_drained(api)
    services = api.use(
        api.services.settings.model_copy(
            update={"sync_max_attempts": 2, "sync_retry_backoff_seconds": 3600}
        )
    )
    await fault(emulator_control, item_id, errorCode="INTERNAL_SERVER_ERROR", count=50)
    async with services.database.transaction() as session:
        await request_sync(session, item_id, reason="test")

    assert await process_due(services, worker_id="w", limit=5) == 1
    row = await request_row(api, item_id)
    assert row is not None
    assert (row.state, row.attempts, row.last_error) == ("QUEUED", 1, "INTERNAL_SERVER_ERROR")
    assert row.not_before > utcnow() + timedelta(minutes=59)
    assert await process_due(services, worker_id="w", limit=5) == 0  # backing off

    async with services.database.transaction() as session:
        await session.execute(
            update(SyncRequest).where(SyncRequest.item_id == item_id).values(not_before=utcnow())
        )
    assert await process_due(services, worker_id="w", limit=5) == 1
    assert await request_row(api, item_id) is None
    outcomes = [run.outcome for run in await runs(services.database, item_id)]
    assert outcomes[-3:] == ["failed", "failed", "abandoned"]


async def test_a_dead_workers_expired_claim_is_taken_over(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await connected_and_drained(api)
    await advance(emulator_control, item_id, add=5)
    now = utcnow()
    async with api.services.database.transaction() as session:
        session.add(
            SyncRequest(
                item_id=item_id,
                state="RUNNING",
                reason="webhook",
                claimed_by="dead-worker",
                claimed_until=now + timedelta(minutes=5),
            )
        )
    assert await process_due(api.services, worker_id="w", limit=5) == 0  # lease still valid
    async with api.services.database.transaction() as session:
        await session.execute(
            update(SyncRequest)
            .where(SyncRequest.item_id == item_id)
            .values(claimed_until=now - timedelta(seconds=1))
        )
    assert await process_due(api.services, worker_id="w", limit=5) == 1
    assert await pending_requests(api.services.database) == 0
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_reconciler_queues_items_without_a_recent_successful_sync(api: Api) -> None:
    stale = await connected_and_drained(api)
    fresh = await connected_and_drained(api)
    waiting = await connected_and_drained(api)
    long_ago = utcnow() - timedelta(days=2)
    async with api.services.database.transaction() as session:
        await session.execute(
            update(PlaidConnection)
            .where(PlaidConnection.item_id.in_([stale, waiting]))
            .values(last_synced_at=long_ago)
        )
        await request_sync(session, waiting, reason="webhook")
        await session.execute(
            update(SyncRequest)
            .where(SyncRequest.item_id == waiting)
            .values(not_before=utcnow() + timedelta(hours=1))
        )

    assert await enqueue_stale(api.services) == 1
    async with api.services.database.transaction() as session:
        queued = {
            row.item_id: row.reason for row in (await session.scalars(select(SyncRequest))).all()
        }
    assert queued == {stale: "reconcile", waiting: "webhook"}
    assert fresh not in queued
    assert await enqueue_stale(api.services) == 0


async def test_trigger_endpoint_roles_and_tenancy(api: Api) -> None:
    item_id: str = (await api.connect())["itemId"]
    url = f"{BASE}/connections/{item_id}/sync"
    viewer = await api.client.post(url, headers=api.auth(role="VIEWER"))
    assert viewer.status_code == 403
    other_org = await api.client.post(url, headers=api.auth(org="o2", role="OWNER"))
    assert other_org.status_code == 404
    unknown = await api.client.post(f"{BASE}/connections/nope/sync", headers=api.auth())
    assert unknown.status_code == 404
    accepted = await api.client.post(url, headers=api.auth(role="MEMBER"))
    assert accepted.status_code == 202
    assert accepted.json() == {"syncRequested": True}
    assert await pending_requests(api.services.database) == 1
