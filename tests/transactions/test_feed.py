"""The service's own change feed and the newest-first list, served from the local store."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.sync.engine import Outcome, sync_item
from tests.conftest import Api
from tests.sync.emulator_faults import advance
from tests.sync.store import Transactions, ledger

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def synced_item(api: Api, *, org: str = "o1") -> str:
    item_id: str = (await api.connect(org=org))["itemId"]
    for _ in range(3):
        if (await sync_item(api.services, item_id, trigger="t")).outcome is Outcome.SUCCESS:
            return item_id
    raise AssertionError("the initial sync did not complete")


async def get(api: Api, path: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get(f"{BASE}{path}", params=params, headers=api.auth(role="VIEWER"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return body


async def page_through(api: Api, item_id: str, cursor: str, count: int) -> dict[str, Any]:
    """Every change after `cursor`, collected page by page, with the last cursor."""
    added: list[dict[str, Any]] = []
    modified: list[dict[str, Any]] = []
    removed: list[dict[str, str]] = []
    for _ in range(1000):
        page = await get(api, f"/transactions/{item_id}/sync", cursor=cursor, count=count)
        added += page["transactions"]
        modified += page["modified"]
        removed += page["removed"]
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            return {"added": added, "modified": modified, "removed": removed, "cursor": cursor}
    raise AssertionError("the feed never ended")


def by_id(transactions: list[dict[str, Any]]) -> Transactions:
    result = {txn["transaction_id"]: txn for txn in transactions}
    assert len(result) == len(transactions), "a transaction was served twice"
    return result


async def test_feed_pages_every_transaction_once_then_exactly_the_changes(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    before = await ledger(emulator_control, item_id)

    first = await page_through(api, item_id, "", count=3)
    assert by_id(first["added"]) == before
    assert first["modified"] == first["removed"] == []

    quiet = await page_through(api, item_id, first["cursor"], count=3)
    assert quiet["added"] == quiet["modified"] == quiet["removed"] == []
    assert quiet["cursor"] == first["cursor"]

    await advance(emulator_control, item_id, add=6, modify=3, post=2, remove=2)
    assert (await sync_item(api.services, item_id, trigger="t")).outcome is Outcome.SUCCESS
    after = await ledger(emulator_control, item_id)

    changes = await page_through(api, item_id, first["cursor"], count=4)
    assert by_id(changes["added"]) == {k: v for k, v in after.items() if k not in before}
    assert by_id(changes["modified"]) == {
        k: v for k, v in after.items() if k in before and before[k] != v
    }
    gone = {k: v["account_id"] for k, v in before.items() if k not in after}
    assert {r["transaction_id"]: r["account_id"] for r in changes["removed"]} == gone
    assert len(changes["removed"]) == len(gone)

    # A client starting now sees today's ledger, removals of what it never saw omitted.
    fresh = await page_through(api, item_id, "", count=500)
    assert by_id(fresh["added"]) == after
    assert fresh["modified"] == fresh["removed"] == []


async def test_feed_amounts_are_exact(
    api: Api, emulator_control: httpx.AsyncClient, emulator: EmulatorServer
) -> None:
    item_id = await synced_item(api)
    state = emulator.app.state.emulator.items[item_id].ledger
    first, second = sorted(state.live)[:2]
    state.modify({**state.live[first], "amount": 0.1})
    state.modify({**state.live[second], "amount": 0.2})
    assert (await sync_item(api.services, item_id, trigger="t")).outcome is Outcome.SUCCESS
    served = by_id((await page_through(api, item_id, "", count=500))["added"])
    assert served[first]["amount"] + served[second]["amount"] == Decimal("0.3")
    assert served == await ledger(emulator_control, item_id)


async def test_feed_refuses_bad_input_and_other_orgs(api: Api) -> None:
    item_id = await synced_item(api)
    url = f"{BASE}/transactions/{item_id}/sync"
    viewer = api.auth(role="VIEWER")
    for params in ({"cursor": "not-a-cursor"}, {"count": 0}, {"count": 501}):
        response = await api.client.get(url, params=params, headers=viewer)
        assert response.status_code == 400, (params, response.text)
    other_item = await synced_item(api, org="o2")
    foreign_cursor = (
        await api.client.get(f"{BASE}/transactions/{other_item}/sync", headers=api.auth(org="o2"))
    ).json()["nextCursor"]
    wrong_item = await api.client.get(url, params={"cursor": foreign_cursor}, headers=viewer)
    assert wrong_item.status_code == 400
    assert wrong_item.json()["error"]["code"] == "INVALID_CURSOR"
    other_org = await api.client.get(url, headers=api.auth(org="o2", role="VIEWER"))
    assert other_org.status_code == 404
    anonymous = await api.client.get(url)
    assert anonymous.status_code == 401


async def test_list_is_newest_first_keyset_paginated_and_filtered(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = await synced_item(api)
    other_item = await synced_item(api, org="o2")
    truth = await ledger(emulator_control, item_id)

    seen: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 7}
        if after:
            params["after"] = after
        page = await get(api, "/transactions", **params)
        seen += page["transactions"]
        after = page["nextAfter"]
        if after is None:
            break
    assert by_id(seen) == truth  # the org's only; o2's Item is not listed
    dates = [txn["date"] for txn in seen]
    assert dates == sorted(dates, reverse=True)

    account_id = next(iter(truth.values()))["account_id"]
    middle = sorted(txn["date"] for txn in truth.values())[len(truth) // 2]
    filtered = await get(
        api, "/transactions", itemId=item_id, accountId=account_id, startDate=middle, limit=500
    )
    expected = {
        k: v for k, v in truth.items() if v["account_id"] == account_id and v["date"] >= middle
    }
    assert by_id(filtered["transactions"]) == expected
    assert filtered["nextAfter"] is None

    foreign = await api.client.get(
        f"{BASE}/transactions", params={"itemId": other_item}, headers=api.auth(role="VIEWER")
    )
    assert foreign.status_code == 404
    for params in (
        {"limit": 501},
        {"after": "garbage"},
        {"startDate": "2024-02-01", "endDate": "2024-01-01"},
    ):
        response = await api.client.get(
            f"{BASE}/transactions", params=params, headers=api.auth(role="VIEWER")
        )
        assert response.status_code == 400, (params, response.text)
