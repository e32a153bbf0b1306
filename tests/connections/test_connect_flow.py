"""The connect flow through the HTTP API: link token, exchange, connections, accounts, removal."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def _audit_actions(api: Api, org: str = "o1") -> list[tuple[str, str]]:
    response = await api.client.get(f"{BASE}/audit", headers=api.auth(org=org, role="ADMIN"))
    assert response.status_code == 200, response.text
    return [(entry["action"], entry["outcome"]) for entry in response.json()["entries"]]


async def test_full_connect_flow(api: Api) -> None:
    link = await api.client.post(
        f"{BASE}/create-link-token", json={"userId": "u1"}, headers=api.auth(role="MEMBER")
    )
    assert link.status_code == 201, link.text
    assert link.json()["linkToken"].startswith("link-")
    assert link.headers["x-request-id"]

    public_token = await api.public_token()
    exchange = await api.client.post(
        f"{BASE}/exchange-token",
        json={"publicToken": public_token, "institutionId": "ins_109508"},
        headers=api.auth(role="MEMBER"),
    )
    assert exchange.status_code == 201, exchange.text
    body = exchange.json()
    item_id = body["itemId"]
    assert body["status"] == "ACTIVE"
    assert body["institutionName"]
    assert 2 <= len(body["accounts"]) <= 4
    assert {"account_id", "balances", "mask", "name", "type"} <= set(body["accounts"][0])
    assert all(
        isinstance(account["balances"]["current"], float | int) for account in body["accounts"]
    )
    assert "access" not in exchange.text

    listed = await api.client.get(f"{BASE}/connections", headers=api.auth(role="VIEWER"))
    assert [row["itemId"] for row in listed.json()] == [item_id]
    assert listed.json()[0]["newAccountsAvailable"] is False

    stored = await api.client.get(f"{BASE}/accounts/{item_id}", headers=api.auth(role="VIEWER"))
    assert sorted(a["account_id"] for a in stored.json()) == sorted(
        a["account_id"] for a in body["accounts"]
    )
    for refresh in ("true", "balance"):
        fresh = await api.client.get(
            f"{BASE}/accounts/{item_id}", params={"refresh": refresh}, headers=api.auth()
        )
        assert fresh.status_code == 200, fresh.text
        assert len(fresh.json()) == len(body["accounts"])

    removed = await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth())
    assert removed.status_code == 200, removed.text
    assert removed.json()["status"] == "REMOVED"
    async with api.services.database.transaction() as session:
        row = (await session.scalars(select(PlaidConnection))).one()
        assert row.access_token_encrypted is None
    assert (await api.client.get(f"{BASE}/connections", headers=api.auth())).json() == []

    actions = await _audit_actions(api)
    for expected in (
        "LINK_TOKEN_CREATED",
        "TOKEN_EXCHANGED",
        "ACCOUNTS_FETCHED",
        "BALANCES_FETCHED",
        "CONNECTION_REMOVED",
    ):
        assert (expected, "SUCCESS") in actions
    events = (await api.client.get(f"{BASE}/events", headers=api.auth())).json()["events"]
    assert [event["type"] for event in events] == ["connection.created", "connection.removed"]


async def test_purge_deletes_accounts(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    response = await api.client.delete(
        f"{BASE}/connections/{item_id}", params={"purge": "true"}, headers=api.auth()
    )
    assert response.status_code == 200
    async with api.services.database.transaction() as session:
        assert (await session.scalars(select(PlaidAccount))).all() == []


async def test_another_org_sees_nothing(api: Api) -> None:
    item_id = (await api.connect(org="o1"))["itemId"]
    other = api.auth(user="u9", org="o2", role="OWNER")
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"{BASE}/accounts/{item_id}", {}),
        ("GET", f"{BASE}/accounts/{item_id}", {"refresh": "true"}),
        ("GET", f"{BASE}/accounts/{item_id}", {"refresh": "balance"}),
        ("DELETE", f"{BASE}/connections/{item_id}", {}),
    ]
    for method, path, params in calls:
        response = await api.client.request(method, path, params=params, headers=other)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "CONNECTION_NOT_FOUND"
    assert (await api.client.get(f"{BASE}/connections", headers=other)).json() == []
    audit = await api.client.get(f"{BASE}/audit", headers=other)
    assert audit.json()["entries"] == []
    events = await api.client.get(f"{BASE}/events", headers=other)
    assert events.json()["events"] == []
    still = await api.client.get(f"{BASE}/connections", headers=api.auth(org="o1"))
    assert [row["itemId"] for row in still.json()] == [item_id]
