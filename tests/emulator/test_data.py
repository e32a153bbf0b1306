"""Deterministic data: same seed and Item order, same data; histories large and quick to build."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
from plaid_bridge.emulator.data import generate_item
from plaid_bridge.emulator.institutions import INSTITUTIONS
from plaid_bridge.emulator.ledger import Ledger
from tests.emulator.conftest import EmulatorPool
from tests.emulator.plaid_http import PlaidHTTP

TODAY = date(2025, 3, 14)


def snapshot(url: str) -> list[dict[str, Any]]:
    """Link three Items at different banks and read everything they hold."""
    plaid = PlaidHTTP(url)
    try:
        result = []
        for institution in ("ins_109508", "ins_109509", "ins_43"):
            item = plaid.link_item(institution, webhook=None)
            plaid.sync_until_ready(item.access_token)
            result.append(
                {
                    "item_id": item.item_id,
                    "accounts": plaid.ok("/accounts/get", {"access_token": item.access_token})[
                        "accounts"
                    ],
                    "transactions": plaid.sync_all(item.access_token).added,
                    "ledger": list(plaid.ledger(item.item_id).values()),
                }
            )
        return result
    finally:
        plaid.close()


_ID_FIELDS = ("item_id", "account_id", "transaction_id", "pending_transaction_id")


def ids_of(value: Any) -> set[str]:
    """Every item, account and transaction id in `value`."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k in _ID_FIELDS and isinstance(v, str)}
        for inner in value.values():
            found |= ids_of(inner)
        return found
    if isinstance(value, list):
        return set().union(*(ids_of(inner) for inner in value))
    return set()


def without_ids(value: Any, names: dict[str, str]) -> Any:
    """`value` with each id replaced by its order of first appearance (ids are per instance)."""
    if isinstance(value, dict):
        return {
            key: (
                names.setdefault(inner, f"id{len(names)}")
                if key in _ID_FIELDS and isinstance(inner, str)
                else without_ids(inner, names)
            )
            for key, inner in sorted(value.items())
        }
    if isinstance(value, list):
        return [without_ids(inner, names) for inner in value]
    return value


def test_same_seed_same_data_across_emulators_under_their_own_ids() -> None:
    config = EmulatorConfig(seed=1234, transactions=150, today=TODAY)
    with EmulatorServer(config) as first, EmulatorServer(config) as second:
        one, two = snapshot(first.url), snapshot(second.url)
    assert without_ids(one, {}) == without_ids(two, {})
    assert len({item["item_id"] for item in one}) == 3
    for item in one:
        assert 2 <= len(item["accounts"]) <= 4
        assert len(item["transactions"]) == 150
    # A fresh emulator never hands out an id another one did (a database may hold it).
    assert len(ids_of(one)) > 450
    assert ids_of(one).isdisjoint(ids_of(two))


def test_another_seed_gives_other_data(emulator_pool: EmulatorPool) -> None:
    first = emulator_pool.get(EmulatorConfig(seed=1, transactions=10, today=TODAY))
    second = emulator_pool.get(EmulatorConfig(seed=2, transactions=10, today=TODAY))
    one, two = snapshot(first.url), snapshot(second.url)
    assert one[0]["accounts"] != two[0]["accounts"]
    assert one[0]["item_id"] != two[0]["item_id"]


def test_history_shape() -> None:
    data = generate_item(42, 0, INSTITUTIONS["ins_43"], 2_000, TODAY)
    subtypes = {account["subtype"] for account in data.accounts}
    assert "checking" in subtypes
    assert {account["balances"]["iso_currency_code"] for account in data.accounts} == {"CAD"}
    dates = [txn["date"] for txn in data.transactions]
    assert min(dates) >= (TODAY - timedelta(days=731)).isoformat()
    assert max(dates) <= TODAY.isoformat()
    pending = [txn for txn in data.transactions if txn["pending"]]
    assert pending
    assert all(txn["date"] >= (TODAY - timedelta(days=2)).isoformat() for txn in pending)
    assert len({txn["transaction_id"] for txn in data.transactions}) == 2_000
    assert {txn["account_id"] for txn in data.transactions} <= {
        account["account_id"] for account in data.accounts
    }


def test_a_hundred_thousand_transactions_are_generated_whole() -> None:
    """Big histories are generated in full with unique ids (their speed is a benchmark's
    business, not a test's)."""
    data = generate_item(7, 3, INSTITUTIONS["ins_109508"], 100_000, TODAY)
    ledger = Ledger()
    ledger.extend(data.transactions)
    assert len(ledger.diff(0)) == 100_000
    assert len({txn["transaction_id"] for txn in data.transactions}) == 100_000


def test_ledger_diff_is_net() -> None:
    ledger = Ledger()
    base = {"account_id": "a", "amount": 1.0}
    ledger.extend([{**base, "transaction_id": tid} for tid in ("t1", "t2", "t3")])
    start = ledger.head
    ledger.add({**base, "transaction_id": "t4"})
    ledger.remove("t4")  # added and removed within the window: invisible
    ledger.modify({**base, "transaction_id": "t1", "amount": 2.0})
    ledger.remove("t2")
    ledger.add({**base, "transaction_id": "t5"})
    ledger.modify({**base, "transaction_id": "t5", "amount": 3.0})
    assert ledger.diff(start) == [("modified", "t1"), ("removed", "t2"), ("added", "t5")]
    assert ledger.diff(0) == [("added", "t3"), ("added", "t1"), ("added", "t5")]
    assert ledger.diff(ledger.head) == []
