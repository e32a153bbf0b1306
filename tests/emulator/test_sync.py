"""/transactions/sync: full reconstruction, incremental updates, pending->posted, mutations."""

from __future__ import annotations

from typing import Any

import pytest

from plaid_bridge.emulator import EmulatorConfig
from tests.emulator.conftest import PlaidFor
from tests.emulator.plaid_http import PlaidHTTP

BIG = EmulatorConfig(transactions=5_000)


def test_first_sync_is_not_ready_then_data_arrives(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    first = plaid.ok("/transactions/sync", {"access_token": item.access_token})
    assert first["transactions_update_status"] == "NOT_READY"
    assert (first["added"], first["modified"], first["removed"]) == ([], [], [])
    assert first["next_cursor"] == ""
    assert first["has_more"] is False
    assert first["accounts"]

    run = plaid.sync_all(item.access_token, count=100)
    assert run.pages == 3
    assert len(run.added) == 300
    assert run.apply({}) == plaid.ledger(item.item_id)


def test_not_ready_syncs_zero_answers_data_at_once(plaid_for: PlaidFor) -> None:
    plaid = plaid_for(EmulatorConfig(transactions=20, not_ready_syncs=0))
    item = plaid.link_item()
    page = plaid.ok("/transactions/sync", {"access_token": item.access_token})
    assert page["transactions_update_status"] == "HISTORICAL_UPDATE_COMPLETE"
    assert len(page["added"]) == 20


def test_full_sync_then_incremental_sync_matches_the_ledger(plaid_for: PlaidFor) -> None:
    plaid = plaid_for(BIG)
    item = plaid.link_item()
    plaid.sync_until_ready(item.access_token)

    run = plaid.sync_all(item.access_token, count=500)
    assert run.pages == 10
    assert (len(run.added), run.modified, run.removed) == (5_000, [], [])
    store = run.apply({})
    assert store == plaid.ledger(item.item_id)
    pending_before = {tid for tid, txn in store.items() if txn["pending"]}
    assert pending_before, "the history has recent pending transactions"

    changes = plaid.control(
        "POST",
        "/emulator/advance",
        json={"days": 2, "itemId": item.item_id, "add": 7, "modify": 4, "post": 3, "remove": 2},
    )
    assert changes["items"] == [
        {"itemId": item.item_id, "added": 7, "modified": 4, "removed": 2, "posted": 3}
    ]

    update = plaid.sync_all(item.access_token, cursor=run.cursor, count=500)
    assert len(update.modified) == 4
    assert len(update.added) == 7 + 3
    assert len(update.removed) == 2 + 3
    assert update.apply(store) == plaid.ledger(item.item_id)

    # Each posted transaction replaces a removed pending one and points back at it.
    removed_ids = {gone["transaction_id"] for gone in update.removed}
    posted = [txn for txn in update.added if txn["pending_transaction_id"]]
    assert len(posted) == 3
    for txn in posted:
        assert txn["pending"] is False
        assert txn["pending_transaction_id"] in pending_before
        assert txn["pending_transaction_id"] in removed_ids
        assert txn["transaction_id"] != txn["pending_transaction_id"]

    # Nothing changed since: the last cursor yields nothing and stays put.
    quiet = plaid.sync_all(item.access_token, cursor=update.cursor)
    assert (quiet.added, quiet.modified, quiet.removed) == ([], [], [])
    assert quiet.cursor == update.cursor


def test_random_advance_keeps_sync_and_ledger_equal(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    plaid.sync_until_ready(item.access_token)
    run = plaid.sync_all(item.access_token)
    store = run.apply({})
    for _ in range(3):
        plaid.control("POST", "/emulator/advance", json={"days": 3})
        run = plaid.sync_all(item.access_token, cursor=run.cursor, count=7)
        run.apply(store)
        assert store == plaid.ledger(item.item_id)


def test_mutation_during_pagination_then_restart_from_the_original_cursor(
    plaid: PlaidHTTP,
) -> None:
    item = plaid.link_item()
    plaid.sync_until_ready(item.access_token)
    first = plaid.sync(item.access_token, "", count=100).json()
    assert first["has_more"] is True

    plaid.control("POST", "/emulator/advance", json={"itemId": item.item_id, "add": 1})
    second = plaid.sync(item.access_token, first["next_cursor"], count=100)
    assert second.status_code == 400
    error = second.json()
    assert (error["error_type"], error["error_code"]) == (
        "TRANSACTIONS_ERROR",
        "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
    )

    restarted = plaid.sync_all(item.access_token, cursor="", count=100)
    assert len(restarted.added) == 301
    assert restarted.apply({}) == plaid.ledger(item.item_id)


def test_cursor_of_another_item_or_tampered_is_invalid(plaid: PlaidHTTP) -> None:
    one, other = plaid.link_item(), plaid.link_item("ins_109510")
    for item in (one, other):
        plaid.sync_until_ready(item.access_token)
    cursor = plaid.sync_all(one.access_token).cursor
    for bad in (cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB"), "x" * 40):
        response = plaid.sync(one.access_token, bad)
        assert response.json()["error_code"] == "INVALID_FIELD", bad
    response = plaid.sync(other.access_token, cursor)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_FIELD"


def test_transactions_have_plaid_shape(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    plaid.sync_until_ready(item.access_token)
    transactions = plaid.sync_all(item.access_token).added
    accounts = {
        a["account_id"]
        for a in plaid.ok("/accounts/get", {"access_token": item.access_token})["accounts"]
    }
    amounts = [txn["amount"] for txn in transactions]
    assert any(a < 0 for a in amounts)
    assert any(a > 0 for a in amounts)
    assert all(round(a, 2) == a for a in amounts)
    assert {txn["account_id"] for txn in transactions} <= accounts
    dates = sorted(txn["date"] for txn in transactions)
    assert dates[0] < dates[-1]
    assert any(txn["pending"] for txn in transactions)
    sample: dict[str, Any] = transactions[0]
    for field in ("location", "payment_meta", "personal_finance_category", "counterparties"):
        assert field in sample


@pytest.mark.parametrize("count", [1, 499])
def test_page_sizes(plaid: PlaidHTTP, count: int) -> None:
    item = plaid.link_item()
    plaid.sync_until_ready(item.access_token)
    page = plaid.sync(item.access_token, "", count=count).json()
    assert len(page["added"]) == min(count, 300)
    assert page["has_more"] is (count < 300)


def test_refresh_adds_activity(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    plaid.sync_until_ready(item.access_token)
    run = plaid.sync_all(item.access_token)
    plaid.ok("/transactions/refresh", {"access_token": item.access_token})
    update = plaid.sync_all(item.access_token, cursor=run.cursor)
    assert 1 <= len(update.added) <= 3
    assert run.apply({}) | {t["transaction_id"]: t for t in update.added} == plaid.ledger(
        item.item_id
    )
