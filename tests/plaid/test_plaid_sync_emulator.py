"""A full /transactions/sync of a 5,000-transaction Item, and the updates after it, rebuild
exactly the emulator's ledger (its ground truth), pending-to-posted changes included."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
from plaid_bridge.plaid import PlaidClient, PlaidError, PlaidErrorClass, SyncPage, TokenExchange

pytestmark = pytest.mark.anyio

HISTORY = 5_000
Store = dict[str, dict[str, Any]]
LedgerReader = Callable[[str], Awaitable[Store]]
MUTATION = {
    "endpoint": "/transactions/sync",
    "errorCode": "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
    "count": 1,
    "page": 3,
}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    """Overrides the shared emulator: this module needs a long history per Item."""
    with EmulatorServer(EmulatorConfig(seed=5, transactions=HISTORY), port=0) as server:
        yield server


@pytest.fixture
def ledger(control: httpx.AsyncClient) -> LedgerReader:
    """Reads the emulator's ground truth for an Item, numbers as exact decimals."""

    async def read(item_id: str) -> Store:
        response = await control.get("/emulator/ledger", params={"item_id": item_id})
        response.raise_for_status()
        document = json.loads(response.content, parse_float=Decimal)
        return {txn["transaction_id"]: txn for txn in document["transactions"]}

    return read


async def sync_all(
    client: PlaidClient, access_token: str, cursor: str, store: Store
) -> tuple[str, list[SyncPage], int]:
    """The service's loop, in miniature: page from `cursor` until `has_more` is false, restart
    from `cursor` on RESTART_SYNC, store nothing for a not-ready answer, then apply every
    page at once. Returns (new cursor, pages applied, restarts)."""
    restarts = 0
    for _ in range(10):  # bounded: not-ready answers and restarts
        pages: list[SyncPage] = []
        position = cursor
        try:
            while True:
                page = await client.sync_transactions(
                    access_token=access_token, cursor=position or None, count=500
                )
                pages.append(page)
                position = page.next_cursor
                if not page.has_more:
                    break
        except PlaidError as error:
            if error.error_class is not PlaidErrorClass.RESTART_SYNC:
                raise
            restarts += 1
            continue
        if pages[-1].not_ready:
            continue
        for page in pages:
            for txn in (*page.added, *page.modified):
                store[txn.transaction_id] = txn.raw
            for removed in page.removed:
                store.pop(removed.transaction_id, None)
        return position, pages, restarts
    raise AssertionError("sync did not complete")


async def test_full_sync_then_updates_rebuild_the_ledger_exactly(
    plaid_client: PlaidClient,
    item: TokenExchange,
    control: httpx.AsyncClient,
    ledger: LedgerReader,
) -> None:
    first = await plaid_client.sync_transactions(access_token=item.access_token)
    assert first.not_ready  # a new Item's first sync: nothing yet, no cursor

    store: Store = {}
    cursor, pages, _ = await sync_all(plaid_client, item.access_token, "", store)
    assert len(pages) == HISTORY // 500
    assert all(len(page.added) == 500 for page in pages)
    assert len(store) == HISTORY
    assert store == await ledger(item.item_id)
    assert all(isinstance(txn["amount"], Decimal | int) for txn in store.values())
    assert pages[-1].accounts

    # Nothing changed: the cursor yields nothing new.
    quiet = await plaid_client.sync_transactions(access_token=item.access_token, cursor=cursor)
    assert (quiet.added, quiet.modified, quiet.removed, quiet.has_more) == ((), (), (), False)

    response = await control.post(
        "/emulator/advance",
        json={"days": 2, "itemId": item.item_id, "add": 30, "modify": 5, "post": 3, "remove": 4},
    )
    response.raise_for_status()
    [counts] = response.json()["items"]
    assert counts["posted"] > 0

    cursor, pages, _ = await sync_all(plaid_client, item.access_token, cursor, store)
    assert store == await ledger(item.item_id)
    removed = {r.transaction_id for page in pages for r in page.removed}
    added = [txn for page in pages for txn in page.added]
    modified = [txn for page in pages for txn in page.modified]
    posted = [txn for txn in added if txn.pending_transaction_id in removed]
    assert len(posted) == counts["posted"]
    assert all(not txn.pending for txn in posted)
    assert len(modified) == counts["modified"]


async def test_a_mutation_during_pagination_restarts_from_the_first_cursor(
    plaid_client: PlaidClient,
    item: TokenExchange,
    control: httpx.AsyncClient,
    ledger: LedgerReader,
) -> None:
    store: Store = {}
    await plaid_client.sync_transactions(access_token=item.access_token)  # not ready yet
    fault = MUTATION | {"itemId": item.item_id}
    assert (await control.post("/emulator/faults", json=fault)).status_code == 201
    with pytest.raises(PlaidError) as caught:
        await sync_all_once(plaid_client, item.access_token)
    assert caught.value.error_class is PlaidErrorClass.RESTART_SYNC
    assert (caught.value.status, caught.value.error_type) == (400, "TRANSACTIONS_ERROR")
    assert not caught.value.retryable

    assert (await control.post("/emulator/faults", json=fault)).status_code == 201
    _, _, restarts = await sync_all(plaid_client, item.access_token, "", store)
    assert restarts == 1
    assert store == await ledger(item.item_id)


async def sync_all_once(client: PlaidClient, access_token: str) -> None:
    """Pages from the start without any restart logic."""
    cursor: str | None = None
    while True:
        page = await client.sync_transactions(access_token=access_token, cursor=cursor)
        cursor = page.next_cursor
        if not page.has_more:
            return
