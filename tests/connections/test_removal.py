"""Disconnecting a bank: the local removal is durable before Plaid is asked, and a removal at
Plaid that fails is owed durably and retried by the worker until Plaid confirms."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update

from plaid_bridge.connections import removal
from plaid_bridge.connections.models import ItemRemoval, PlaidConnection
from plaid_bridge.connections.tokens import decrypt_access_token
from plaid_bridge.db import utcnow
from plaid_bridge.plaid.errors import PlaidError, PlaidErrorClass
from plaid_bridge.worker import Worker
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
REMOVE = "/item/remove"


async def _token(api: Api, item_id: str) -> str:
    async with api.services.database.transaction() as session:
        connection = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
        assert connection is not None
        return await decrypt_access_token(connection, cipher=api.services.cipher)


async def _owed(api: Api) -> list[ItemRemoval]:
    async with api.services.database.transaction() as session:
        return list((await session.scalars(select(ItemRemoval))).all())


async def _make_due(api: Api) -> None:
    """As if the owed removals' backoff had passed."""
    async with api.services.database.transaction() as session:
        await session.execute(update(ItemRemoval).values(not_before=utcnow()))


async def _exists_at_plaid(api: Api, token: str) -> bool:
    try:
        await api.services.plaid.get_item(access_token=token)
    except PlaidError as error:
        if error.error_class is PlaidErrorClass.GONE:
            return False
        raise
    return True


async def test_removal_confirmed_by_plaid_leaves_nothing_owed(api: Api) -> None:
    item_id: str = (await api.connect())["itemId"]
    token = await _token(api, item_id)

    removed = await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth())

    assert removed.status_code == 200, removed.text
    assert removed.json()["status"] == "REMOVED"
    assert await _owed(api) == []
    assert not await _exists_at_plaid(api, token)


async def test_plaid_failing_leaves_a_removal_the_worker_completes(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id: str = (await api.connect())["itemId"]
    token = await _token(api, item_id)
    attempts = api.services.settings.plaid_max_retries + 1
    fault = await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": REMOVE, "errorCode": "INTERNAL_SERVER_ERROR", "count": attempts},
    )
    assert fault.status_code == 201, fault.text

    removed = await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth())

    # Removed here, durably, whatever Plaid said; the removal at Plaid is owed.
    assert removed.status_code == 200, removed.text
    assert removed.json()["status"] == "REMOVED"
    async with api.services.database.transaction() as session:
        connection = await session.scalar(select(PlaidConnection))
    assert connection is not None
    assert (connection.status, connection.access_token_encrypted) == ("REMOVED", None)
    [owed] = await _owed(api)
    assert (owed.item_id, owed.attempts, owed.last_error) == (item_id, 1, "INTERNAL_SERVER_ERROR")
    assert owed.not_before > utcnow()  # backing off
    assert await _exists_at_plaid(api, token)

    assert await removal.process_due(api.services) == 0  # not due yet
    await _make_due(api)
    await Worker(api.services, worker_id="w1").run_sync_queue()

    assert await _owed(api) == []
    assert not await _exists_at_plaid(api, token)


async def test_an_item_already_gone_counts_as_removed(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id: str = (await api.connect())["itemId"]
    token = await _token(api, item_id)
    await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": REMOVE, "errorCode": "PLANNED_MAINTENANCE", "count": 10},
    )
    removed = await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth())
    assert removed.status_code == 200, removed.text
    await emulator_control.delete("/emulator/faults")
    await api.services.plaid.remove_item(access_token=token)  # gone by other means meanwhile

    await _make_due(api)
    assert await removal.process_due(api.services) == 1

    assert await _owed(api) == []
