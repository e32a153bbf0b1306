"""`DELETE /connections/{itemId}?purge=true` leaves nothing of the Item: its accounts,
transactions and change-feed rows go in the removal's transaction, and no route serves them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from plaid_bridge.sync.engine import Outcome, sync_item
from plaid_bridge.transactions.models import PlaidTransaction
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def _synced(api: Api, user: str) -> str:
    item_id: str = (await api.connect(user=user))["itemId"]
    for _ in range(3):  # Plaid may not be ready at the first call
        if (await sync_item(api.services, item_id, trigger="t")).outcome is Outcome.SUCCESS:
            return item_id
    raise AssertionError("the initial sync did not complete")


async def _rows(api: Api, item_id: str) -> tuple[int, int]:
    async with api.services.database.transaction() as session:
        connection_id = await session.scalar(
            select(PlaidConnection.id).where(PlaidConnection.item_id == item_id)
        )
        accounts = await session.scalar(
            select(func.count())
            .select_from(PlaidAccount)
            .where(PlaidAccount.connection_id == connection_id)
        )
        transactions = await session.scalar(
            select(func.count())
            .select_from(PlaidTransaction)
            .where(PlaidTransaction.connection_id == connection_id)
        )
    return accounts or 0, transactions or 0


@pytest.mark.parametrize("purge", [True, False])
async def test_purge_leaves_nothing_of_the_item(api: Api, purge: bool) -> None:
    kept = await _synced(api, "u-kept")
    removed = await _synced(api, "u-removed")
    kept_rows = await _rows(api, kept)
    accounts, transactions = await _rows(api, removed)
    assert accounts > 0
    assert transactions > 0

    response = await api.client.delete(
        f"{BASE}/connections/{removed}", params={"purge": str(purge).lower()}, headers=api.auth()
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "REMOVED"
    assert await _rows(api, kept) == kept_rows
    listed = await api.client.get(
        f"{BASE}/transactions", params={"itemId": removed, "limit": 500}, headers=api.auth()
    )
    feed = await api.client.get(f"{BASE}/transactions/{removed}/sync", headers=api.auth())
    stored_accounts = await api.client.get(f"{BASE}/accounts/{removed}", headers=api.auth())
    if purge:
        assert await _rows(api, removed) == (0, 0)
        assert listed.json()["transactions"] == []
        assert feed.json()["transactions"] == []
        assert stored_accounts.json() == []
    else:  # without purge the history stays readable
        assert await _rows(api, removed) == (accounts, transactions)
        assert len(listed.json()["transactions"]) > 0
    every = await api.client.get(f"{BASE}/transactions", params={"limit": 500}, headers=api.auth())
    ids = {txn["account_id"] for txn in every.json()["transactions"]}
    async with api.services.database.transaction() as session:
        kept_accounts = set(
            await session.scalars(
                select(PlaidAccount.account_id)
                .join(PlaidConnection)
                .where(PlaidConnection.item_id == kept)
            )
        )
    assert ids <= kept_accounts
