"""The emulator's state file: a restart gives back the same Items, ledgers, tokens and cursors;
ids never repeat across instances; a bad file is refused with one message naming it."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from plaid_bridge.emulator import EmulatorConfig, EmulatorServer, create_app
from plaid_bridge.emulator.institutions import INSTITUTIONS
from plaid_bridge.emulator.items import Item
from plaid_bridge.emulator.persistence import StateFileError, load
from plaid_bridge.emulator.state import EmulatorState
from tests.emulator.plaid_http import PlaidHTTP

TODAY = date(2025, 3, 14)


def item_view(item: Item) -> dict[str, Any]:
    """Everything an Item answers with or decides by, the ledger's log included."""
    ledger = item.ledger
    return {
        **item.to_dict(),
        "live": ledger.live,
        "log": ledger._log,
        "entries": ledger._entries,
        "pending": list(item.pending_transactions),
        "factoryAccounts": item.factory.accounts,
        "activityRuns": item.activity_runs,
        "accountsAdded": item.accounts_added,
    }


def state_view(state: EmulatorState) -> dict[str, Any]:
    return {
        "items": {item_id: item_view(item) for item_id, item in state.items.items()},
        "byToken": {token: item.item_id for token, item in state.by_token.items()},
        "publicTokens": {k: v.to_dict() for k, v in state.public_tokens.items()},
        "linkTokens": {k: v.to_dict() for k, v in state.link_tokens.items()},
        "linkSessions": {k: v.to_dict() for k, v in state.link_sessions.items()},
        "webhooks": state.webhooks.records(),
        "keys": state.keys.to_dict(),
        "salt": state.id_salt,
        "snapshot": state.snapshot(),
    }


def busy_emulator(plaid: PlaidHTTP) -> tuple[str, str, str]:
    """Items with a history of changes of every kind; returns (access token, cursor, item id)."""
    first = plaid.link_item()
    second = plaid.link_item("ins_43")
    plaid.sync_until_ready(first.access_token)
    cursor = plaid.sync_all(first.access_token, count=100).cursor
    plaid.control("POST", "/emulator/advance", json={"days": 3})
    plaid.control(
        "POST",
        "/emulator/advance",
        json={"days": 1, "itemId": first.item_id, "add": 4, "modify": 2, "remove": 1, "post": 1},
    )
    token = first.access_token
    plaid.ok(
        "/sandbox/item/fire_webhook",
        {"access_token": token, "webhook_code": "NEW_ACCOUNTS_AVAILABLE"},
    )
    plaid.ok("/accounts/balance/get", {"access_token": token})
    plaid.ok("/transactions/refresh", {"access_token": token})
    plaid.control("POST", "/emulator/advance", json={"days": 2})
    plaid.ok("/sandbox/item/reset_login", {"access_token": second.access_token})
    plaid.ok("/link/token/create", link_token_body())
    plaid.ok(
        "/sandbox/public_token/create",
        {"institution_id": "ins_109509", "initial_products": ["transactions"]},
    )
    plaid.webhooks(wait=True)
    return token, cursor, first.item_id


def link_token_body() -> dict[str, Any]:
    return {
        "client_name": "Test",
        "language": "en",
        "country_codes": ["US"],
        "user": {"client_user_id": "u1"},
        "products": ["transactions"],
    }


def sync_page(plaid: PlaidHTTP, token: str, cursor: str) -> dict[str, Any]:
    body = plaid.ok("/transactions/sync", {"access_token": token, "cursor": cursor, "count": 7})
    body.pop("request_id")
    return body


def test_state_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    config = EmulatorConfig(seed=9, transactions=400, today=TODAY, state_path=path)
    with EmulatorServer(config) as server:
        plaid = PlaidHTTP(server.url)
        token, cursor, item_id = busy_emulator(plaid)
        before_page = sync_page(plaid, token, cursor)
        before_ledger = plaid.ledger(item_id)
        plaid.close()
        state: EmulatorState = server.app.state.emulator
    before = state_view(state)

    restored = EmulatorState(EmulatorConfig(seed=9, transactions=400, today=TODAY))
    assert load(restored, path)
    assert state_view(restored) == before
    assert len(before["items"]) == 3
    assert any(item["error"] for item in before["items"].values())

    # A new server on the file answers a cursor of the old one exactly as the old one did.
    with EmulatorServer(config) as server:
        plaid = PlaidHTTP(server.url)
        assert sync_page(plaid, token, cursor) == before_page
        assert plaid.ledger(item_id) == before_ledger
        plaid.close()


def test_a_link_session_goes_on_after_a_restart(tmp_path: Path) -> None:
    """A user half-way through Link when the emulator restarts finishes on the new one."""
    path = tmp_path / "emulator.json"
    config = EmulatorConfig(transactions=10, today=TODAY, state_path=path)
    with EmulatorServer(config) as server:
        plaid = PlaidHTTP(server.url)
        token = plaid.ok("/link/token/create", link_token_body())["link_token"]
        started = plaid.client.post("/link/session/start", json={"link_token": token})
        session_id = started.json()["link_session_id"]
        wrong = {
            "link_session_id": session_id,
            "institution_id": "ins_109508",
            "username": "user_good",
            "password": "wrong",
        }
        assert plaid.client.post("/link/session/credentials", json=wrong).status_code == 400
        plaid.close()
    with EmulatorServer(config) as server:
        plaid = PlaidHTTP(server.url)
        kept = plaid.control("GET", f"/emulator/link/sessions/{session_id}")
        assert kept["errorCode"] == "INVALID_CREDENTIALS"
        right = {**wrong, "password": "pass_good"}
        assert plaid.client.post("/link/session/credentials", json=right).status_code == 200
        finished = plaid.client.post("/link/session/finish", json={"link_session_id": session_id})
        public_token = finished.json()["public_token"]
        exchanged = plaid.ok("/item/public_token/exchange", {"public_token": public_token})
        assert exchanged["item_id"]
        plaid.close()


def test_big_ledgers_are_saved_as_their_derivation(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    config = EmulatorConfig(transactions=20_000, today=TODAY, state_path=path)
    with EmulatorServer(config) as server:
        plaid = PlaidHTTP(server.url)
        item = plaid.link_item()
        plaid.control("POST", "/emulator/advance", json={"days": 5})
        plaid.close()
        live = dict(server.app.state.emulator.items[item.item_id].ledger.live)
    assert path.stat().st_size < 20_000  # 20,000 transactions would be ~20 MB
    restored = EmulatorState(EmulatorConfig())
    load(restored, path)
    assert restored.items[item.item_id].ledger.live == live


def test_a_change_is_saved_soon_without_a_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "var" / "emulator.json"
    with EmulatorServer(EmulatorConfig(transactions=10, state_path=path)) as server:
        plaid = PlaidHTTP(server.url)
        item = plaid.link_item()
        deadline = time.monotonic() + 10
        saved: set[str] = set()
        while item.item_id not in saved and time.monotonic() < deadline:
            if path.exists():
                saved = {
                    entry["itemId"] for entry in json.loads(path.read_bytes())["state"]["items"]
                }
            time.sleep(0.05)
        assert item.item_id in saved
        plaid.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["emulator.json"]  # no temporary left


def test_without_a_state_path_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with EmulatorServer(EmulatorConfig(transactions=10)) as server:
        plaid = PlaidHTTP(server.url)
        plaid.link_item()
        plaid.close()
    assert list(tmp_path.iterdir()) == []


def new_items(state: EmulatorState, count: int) -> list[Item]:
    async def create() -> list[Item]:
        institution = INSTITUTIONS["ins_109508"]
        return [await state.create_item(institution, ["transactions"], None) for _ in range(count)]

    return asyncio.run(create())


def identities(items: list[Item]) -> set[str]:
    found = set()
    for item in items:
        found |= {item.item_id, item.access_token}
        found |= {account["account_id"] for account in item.accounts}
        found |= set(item.ledger.live)
    return found


def test_two_fresh_instances_never_share_an_id_or_token() -> None:
    config = EmulatorConfig(seed=5, transactions=20, today=TODAY)
    one, two = EmulatorState(config), EmulatorState(config)
    first, second = new_items(one, 5), new_items(two, 5)
    assert identities(first).isdisjoint(identities(second))
    assert len(identities(first)) == 5 * 2 + sum(len(i.accounts) + 20 for i in first)
    # Same seed, same data: the transactions of each Item match but for their ids.
    for a, b in zip(first, second, strict=True):
        amounts = [(t["date"], t["amount"], t["name"]) for t in a.ledger.live.values()]
        assert amounts == [(t["date"], t["amount"], t["name"]) for t in b.ledger.live.values()]
    # A reset instance starts over at index 0 with new ids too.
    one.reset()
    assert identities(new_items(one, 5)).isdisjoint(identities(first))


def write(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not an emulator state file"),
        (b'{"format": "plaid-bridge-emulator-state", "version": 99}', "format version 99"),
        (
            b'{"format": "plaid-bridge-emulator-state", "version": 1, "generator": "x"}',
            "generates other data",
        ),
    ],
)
def test_a_bad_state_file_is_refused_naming_it_and_fresh(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "emulator.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError) as raised:
        create_app(EmulatorConfig(state_path=path))
    message = str(raised.value)
    assert str(path) in message
    assert problem in message
    assert "--fresh" in message
    assert path.read_bytes() == content  # left for the user to look at


def test_a_damaged_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    with EmulatorServer(EmulatorConfig(transactions=10, state_path=path)) as server:
        plaid = PlaidHTTP(server.url)
        plaid.link_item()
        plaid.close()
    document = json.loads(path.read_bytes())
    document["state"]["items"][0]["ledgerHead"] += 1
    write(path, document)
    with pytest.raises(StateFileError, match=r"damaged: ValueError: item .* replay gave"):
        create_app(EmulatorConfig(state_path=path))
    del document["state"]["items"]
    write(path, document)
    with pytest.raises(StateFileError, match="damaged: KeyError"):
        create_app(EmulatorConfig(state_path=path))
