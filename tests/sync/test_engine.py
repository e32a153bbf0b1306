"""The sync engine against the emulator: the store equals Plaid's ledger after every update, and
nothing but a complete update is ever stored."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from decimal import Decimal

import anyio
import httpx
import pytest
from sqlalchemy import func, select

from plaid_bridge.activity.events import Event
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.plaid.errors import PlaidErrorClass
from plaid_bridge.sync.engine import Outcome, SyncResult, sync_item
from plaid_bridge.sync.locks import try_database_lock
from plaid_bridge.transactions.models import PlaidTransaction
from tests.conftest import Api
from tests.sync.conftest import PAGE_SIZE
from tests.sync.emulator_faults import advance, fault, sync_calls, wait_for_calls
from tests.sync.store import cursor_of, ledger, runs, stored

pytestmark = pytest.mark.anyio


async def synced_item(api: Api) -> str:
    """A connected Item whose initial sync has completed."""
    item_id: str = (await api.connect())["itemId"]
    assert (await sync_item(api.services, item_id, trigger="t")).outcome is Outcome.NOT_READY
    assert (await sync_item(api.services, item_id, trigger="t")).outcome is Outcome.SUCCESS
    return item_id


async def sync_while(
    api: Api, item_id: str, meanwhile: Callable[[], Awaitable[None]]
) -> SyncResult:
    """Sync the Item with `meanwhile` running beside the run; the run's result."""
    results: list[SyncResult] = []

    async def run() -> None:
        results.append(await sync_item(api.services, item_id, trigger="test"))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        await meanwhile()
    return results[0]


async def test_initial_sync_then_updates_match_the_ledger(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = (await api.connect())["itemId"]
    services = api.services

    first = await sync_item(services, item_id, trigger="test")
    assert first.outcome is Outcome.NOT_READY
    assert await cursor_of(services.database, item_id) is None
    assert await stored(services.database, item_id) == {}

    second = await sync_item(services, item_id, trigger="test")
    assert second.outcome is Outcome.SUCCESS, second
    truth = await ledger(emulator_control, item_id)
    assert second.added == len(truth)
    assert second.pages == -(-len(truth) // PAGE_SIZE) > 1
    assert await stored(services.database, item_id) == truth

    counts = await advance(emulator_control, item_id, add=9, modify=4, post=3, remove=2)
    third = await sync_item(services, item_id, trigger="test")
    assert third.outcome is Outcome.SUCCESS, third
    assert {"added": third.added, "modified": third.modified, "removed": third.removed} == counts
    assert await stored(services.database, item_id) == await ledger(emulator_control, item_id)

    recorded = await runs(services.database, item_id)
    assert [run.outcome for run in recorded] == ["not_ready", "success", "success"]
    assert len(recorded[1].plaid_request_ids) == second.pages
    assert recorded[2].added == counts["added"]
    async with services.database.transaction() as session:
        connection = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
        assert connection is not None
        assert connection.change_seq == 2
        assert connection.last_synced_at is not None
        assert connection.historical_update_complete
        updates = await session.scalar(
            select(func.count()).where(
                Event.item_id == item_id, Event.type == "transactions.updated"
            )
        )
    assert updates == 2


async def test_resync_with_nothing_new_changes_nothing(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    async with api.services.database.transaction() as session:
        before = (
            await session.execute(select(PlaidTransaction.id, PlaidTransaction.change_seq))
        ).all()
    again = await sync_item(api.services, item_id, trigger="test")
    assert again.outcome is Outcome.SUCCESS
    assert (again.added, again.modified, again.removed) == (0, 0, 0)
    async with api.services.database.transaction() as session:
        after = (
            await session.execute(select(PlaidTransaction.id, PlaidTransaction.change_seq))
        ).all()
    assert sorted(after) == sorted(before)
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_mutation_during_pagination_restarts_from_the_first_cursor(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    counts = await advance(emulator_control, item_id, add=20, modify=3, post=2, remove=2)
    await fault(
        emulator_control,
        item_id,
        errorCode="TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
        page=3,
        count=2,
    )
    result = await sync_item(api.services, item_id, trigger="test")
    assert result.outcome is Outcome.SUCCESS, result
    assert result.restarts == 2
    assert {"added": result.added, "modified": result.modified, "removed": result.removed} == (
        counts
    )
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_too_many_restarts_fail_and_keep_the_previous_state(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    cursor = await cursor_of(api.services.database, item_id)
    before = await stored(api.services.database, item_id)
    await advance(emulator_control, item_id, add=20, remove=3)
    restarts = api.services.settings.sync_max_restarts
    await fault(
        emulator_control,
        item_id,
        errorCode="TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
        page=2,
        count=restarts + 1,
    )
    result = await sync_item(api.services, item_id, trigger="test")
    assert result.outcome is Outcome.FAILED
    assert result.error_class is PlaidErrorClass.RESTART_SYNC
    assert result.retryable
    assert result.restarts == restarts
    assert await cursor_of(api.services.database, item_id) == cursor
    assert await stored(api.services.database, item_id) == before
    failed = (await runs(api.services.database, item_id))[-1]
    assert failed.outcome == "failed"
    assert failed.error_code == "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION"

    retried = await sync_item(api.services, item_id, trigger="test")
    assert retried.outcome is Outcome.SUCCESS
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_plaid_failure_on_a_later_page_stores_nothing(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    cursor = await cursor_of(api.services.database, item_id)
    before = await stored(api.services.database, item_id)
    await advance(emulator_control, item_id, add=25, modify=2)
    # More failures than the client's own retries.
    await fault(emulator_control, item_id, errorCode="INTERNAL_SERVER_ERROR", page=3, count=10)
    result = await sync_item(api.services, item_id, trigger="test")
    assert result.outcome is Outcome.FAILED
    assert result.error_code == "INTERNAL_SERVER_ERROR"
    assert result.retryable
    assert await cursor_of(api.services.database, item_id) == cursor
    assert await stored(api.services.database, item_id) == before
    await emulator_control.delete("/emulator/faults")
    assert (await sync_item(api.services, item_id, trigger="test")).outcome is Outcome.SUCCESS
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_login_required_marks_the_connection_and_stops_syncing(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    await fault(emulator_control, item_id, errorCode="ITEM_LOGIN_REQUIRED", count=1)
    result = await sync_item(api.services, item_id, trigger="test")
    assert result.outcome is Outcome.FAILED
    assert result.error_class is PlaidErrorClass.NEEDS_USER
    assert not result.retryable
    async with api.services.database.transaction() as session:
        status = await session.scalar(
            select(PlaidConnection.status).where(PlaidConnection.item_id == item_id)
        )
    assert status == "LOGIN_REQUIRED"
    calls = await sync_calls(emulator_control, item_id)
    skipped = await sync_item(api.services, item_id, trigger="test")
    assert skipped.outcome is Outcome.SKIPPED
    assert await sync_calls(emulator_control, item_id) == calls


async def test_a_failure_older_than_a_change_to_the_connection_leaves_its_status(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    """Plaid said "login required" to a run, but the connection changed before the run could
    record it (say the user re-authenticated): the newer state stands."""
    item_id = await synced_item(api)
    await advance(emulator_control, item_id, add=20)
    calls = await sync_calls(emulator_control, item_id)
    await fault(emulator_control, item_id, errorCode="ITEM_LOGIN_REQUIRED", latencyMs=1_500, page=2)

    async def reauthenticated() -> None:
        await wait_for_calls(emulator_control, item_id, calls + 1)  # page 2 is slow to fail
        async with api.services.database.transaction() as session:
            connection = await session.scalar(
                select(PlaidConnection).where(PlaidConnection.item_id == item_id)
            )
            assert connection is not None
            connection.updated_at = utcnow()

    result = await sync_while(api, item_id, reauthenticated)
    assert result.error_class is PlaidErrorClass.NEEDS_USER
    async with api.services.database.transaction() as session:
        status = await session.scalar(
            select(PlaidConnection.status).where(PlaidConnection.item_id == item_id)
        )
    assert status == "ACTIVE"


async def test_cancelled_run_between_pages_stores_nothing(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    cursor = await cursor_of(api.services.database, item_id)
    before = await stored(api.services.database, item_id)
    await advance(emulator_control, item_id, add=30, post=2, remove=1)
    calls = await sync_calls(emulator_control, item_id)
    await fault(emulator_control, item_id, latencyMs=3_000, page=4)

    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(sync_item, api.services, item_id, trigger="test"))
        await wait_for_calls(emulator_control, item_id, calls + 3)
        group.cancel_scope.cancel()  # the worker dies with pages 1-3 staged
    # The slow page may not have been asked for yet when the run died: Plaid is well again.
    await emulator_control.delete("/emulator/faults")

    assert await cursor_of(api.services.database, item_id) == cursor
    assert await stored(api.services.database, item_id) == before
    resumed = await sync_item(api.services, item_id, trigger="test")
    assert resumed.outcome is Outcome.SUCCESS, resumed
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_runs_of_one_item_never_overlap(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    await advance(emulator_control, item_id, add=15, modify=2)
    await fault(emulator_control, item_id, latencyMs=300, page=2)
    results: list[SyncResult] = []

    async def run() -> None:
        results.append(await sync_item(api.services, item_id, trigger="test"))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(run)
    outcomes = sorted(result.outcome.value for result in results)
    assert outcomes == ["busy"] * 4 + ["success"]
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)


async def test_a_run_in_another_process_keeps_this_one_out(api: Api) -> None:
    """Another worker process holding the Item's database lock (PostgreSQL) makes a run BUSY."""
    if api.services.database.dialect != "postgresql":
        pytest.skip("SQLite is single-process: its lock is the in-process one")
    item_id = await synced_item(api)
    async with api.services.database.transaction() as session:
        assert await try_database_lock(session, item_id)
        busy = await sync_item(api.services, item_id, trigger="test")
    assert busy.outcome is Outcome.BUSY
    assert (await sync_item(api.services, item_id, trigger="test")).outcome is Outcome.SUCCESS


async def test_amounts_are_exact_decimals(
    api: Api, emulator_control: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    item_id = await synced_item(api)
    ledger_state = emulator.app.state.emulator.items[item_id].ledger
    chosen = sorted(ledger_state.live)[:4]
    for transaction_id, amount in zip(chosen, (0.1, 0.2, -0.01, 1234567.89), strict=True):
        ledger_state.modify({**ledger_state.live[transaction_id], "amount": amount})
    assert (await sync_item(api.services, item_id, trigger="test")).outcome is Outcome.SUCCESS
    truth = await ledger(emulator_control, item_id)
    assert await stored(api.services.database, item_id) == truth
    async with api.services.database.transaction() as session:
        amounts = dict(
            (
                await session.execute(
                    select(PlaidTransaction.transaction_id, PlaidTransaction.amount).where(
                        PlaidTransaction.transaction_id.in_(chosen)
                    )
                )
            ).all()
        )
    assert amounts[chosen[0]] + amounts[chosen[1]] == Decimal("0.3")
    assert amounts[chosen[2]] == Decimal("-0.01")
    assert amounts[chosen[3]] == Decimal("1234567.89")
