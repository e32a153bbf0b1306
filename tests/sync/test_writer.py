"""How an update is written: Plaid's objects kept as sent, a transaction that moved between
connections, and an overtaken update that leaves nothing behind, on both databases."""

from __future__ import annotations

import functools
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select, update

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.sync.engine import Outcome, sync_item
from plaid_bridge.transactions.models import PlaidTransaction
from tests.conftest import Api
from tests.sync.emulator_faults import advance, fault, sync_calls, wait_for_calls
from tests.sync.store import cursor_of, ledger, runs, stored
from tests.sync.test_engine import sync_while, synced_item

pytestmark = pytest.mark.anyio


async def test_plaids_objects_are_stored_exactly_as_sent(
    api: Api, emulator_control: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    item_id = await synced_item(api)
    items = emulator.app.state.emulator.items
    book = items[item_id].ledger
    chosen = sorted(book.live)[0]
    # More digits than a float holds: only text kept as sent comes back equal.
    location = {**book.live[chosen]["location"], "lat": Decimal("40.712776000000000000001")}
    book.modify({**book.live[chosen], "location": location})
    assert (await sync_item(api.services, item_id, trigger="test")).outcome is Outcome.SUCCESS
    mine = await stored(api.services.database, item_id)
    assert mine[chosen]["location"]["lat"] == Decimal("40.712776000000000000001")
    assert mine == await ledger(emulator_control, item_id)


async def test_a_transaction_stored_under_another_connection_moves_to_this_one(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    """Plaid's transaction ids are unique, so a row another connection holds (a relinked bank,
    say) is taken over by the Item that reports it, not duplicated or refused."""
    other = await synced_item(api)
    item_id = await synced_item(api)
    before = set(await stored(api.services.database, item_id))
    await advance(emulator_control, item_id, add=10)
    new = sorted(set(await ledger(emulator_control, item_id)) - before)
    async with api.services.database.transaction() as session:
        donor = await session.scalar(
            select(PlaidTransaction)
            .join(PlaidConnection, PlaidConnection.id == PlaidTransaction.connection_id)
            .where(PlaidConnection.item_id == other)
            .limit(1)
        )
        assert donor is not None
        donor.transaction_id = new[3]  # now held by the other Item's connection

    result = await sync_item(api.services, item_id, trigger="test")
    assert result.outcome is Outcome.SUCCESS, result
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)
    assert new[3] not in await stored(api.services.database, other)


async def test_an_update_overtaken_before_it_lands_leaves_nothing_behind(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    """Pages already written are undone when another run moves the connection on meanwhile."""
    item_id = await synced_item(api)
    cursor = await cursor_of(api.services.database, item_id)
    before = await stored(api.services.database, item_id)
    await advance(emulator_control, item_id, add=30, modify=3, post=2, remove=2)
    calls = await sync_calls(emulator_control, item_id)
    await fault(emulator_control, item_id, latencyMs=1_500, page=3)

    async def overtake() -> None:
        await wait_for_calls(emulator_control, item_id, calls + 2)  # page 3 is slow to come
        async with api.services.database.transaction() as session:
            await session.execute(
                update(PlaidConnection)
                .where(PlaidConnection.item_id == item_id)
                .values(change_seq=PlaidConnection.change_seq + 1)
            )

    result = await sync_while(api, item_id, overtake)
    await emulator_control.delete("/emulator/faults")

    assert result.outcome is Outcome.SUPERSEDED
    assert [run.outcome for run in await runs(api.services.database, item_id)][-1] == "superseded"
    assert await cursor_of(api.services.database, item_id) == cursor
    assert await stored(api.services.database, item_id) == before
    again = functools.partial(sync_item, api.services, item_id, trigger="test")
    assert (await again()).outcome is Outcome.SUCCESS
    assert await stored(api.services.database, item_id) == await ledger(emulator_control, item_id)
