"""A broken connection is reported the same everywhere: a sync asked for one that cannot sync is
409 with the reason, and a clean answer of Plaid (a live health check, an account refresh) for a
LOGIN_REQUIRED or ERROR connection repairs it through the lifecycle, as LOGIN_REPAIRED does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.connections.tokens import decrypt_access_token
from plaid_bridge.sync.models import SyncRequest
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def _break_login(api: Api, item_id: str) -> None:
    """The Item needs the user at Plaid, and the service has seen it (a refresh met the error)."""
    async with api.services.database.transaction() as session:
        row = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
        assert row is not None
        token = await decrypt_access_token(row, cipher=api.services.cipher)
    await api.services.plaid.sandbox_reset_login(access_token=token)
    refused = await api.client.get(
        f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["needsReauth"] is True
    assert await _connection(api, item_id) == ("LOGIN_REQUIRED", "ITEM_LOGIN_REQUIRED")


async def _connection(api: Api, item_id: str) -> tuple[str, str | None]:
    async with api.services.database.transaction() as session:
        row = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
    assert row is not None
    return row.status, row.error_code


async def _set(api: Api, item_id: str, **values: Any) -> None:
    async with api.services.database.transaction() as session:
        await session.execute(
            update(PlaidConnection).where(PlaidConnection.item_id == item_id).values(**values)
        )


async def _forget_sync_requests(api: Api) -> None:
    async with api.services.database.transaction() as session:
        for row in await session.scalars(select(SyncRequest)):
            await session.delete(row)


async def _sync_requested(api: Api, item_id: str) -> str | None:
    async with api.services.database.transaction() as session:
        row = await session.scalar(select(SyncRequest).where(SyncRequest.item_id == item_id))
    return None if row is None else row.reason


async def _repairs(api: Api, item_id: str) -> tuple[list[Any], list[Any]]:
    """The `connection.repaired` events and the audited status changes back to ACTIVE."""
    events = (await api.client.get(f"{BASE}/events", headers=api.auth())).json()["events"]
    audit = (await api.client.get(f"{BASE}/audit", headers=api.auth())).json()["entries"]
    return (
        [e for e in events if e["type"] == "connection.repaired" and e["itemId"] == item_id],
        [
            a
            for a in audit
            if a["action"] == "CONNECTION_STATUS_CHANGED"
            and a["itemId"] == item_id
            and a["details"].get("to") == "ACTIVE"
        ],
    )


@pytest.mark.parametrize(
    ("status", "error_code", "needs_reauth"),
    [
        ("LOGIN_REQUIRED", "ITEM_LOGIN_REQUIRED", True),
        ("REVOKED", "USER_PERMISSION_REVOKED", False),
        ("REMOVED", None, False),
    ],
)
async def test_a_sync_for_a_connection_that_cannot_sync_is_409_with_the_reason(
    api: Api, status: str, error_code: str | None, needs_reauth: bool
) -> None:
    item_id: str = (await api.connect())["itemId"]
    await _forget_sync_requests(api)
    await _set(api, item_id, status=status, error_code=error_code)

    response = await api.client.post(f"{BASE}/connections/{item_id}/sync", headers=api.auth())

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == f"CONNECTION_{status}"
    assert error["needsReauth"] is needs_reauth
    assert (error["status"], error["errorCode"]) == (status, error_code)
    assert error["message"]
    assert await _sync_requested(api, item_id) is None
    audit = (await api.client.get(f"{BASE}/audit", headers=api.auth())).json()["entries"]
    assert ("SYNC_REQUESTED", "FAILURE") in [(a["action"], a["outcome"]) for a in audit]


@pytest.mark.parametrize("status", ["ACTIVE", "ERROR", "PENDING_EXPIRATION"])
async def test_a_sync_for_a_connection_that_can_sync_is_accepted(api: Api, status: str) -> None:
    item_id: str = (await api.connect())["itemId"]
    await _set(api, item_id, status=status)
    response = await api.client.post(f"{BASE}/connections/{item_id}/sync", headers=api.auth())
    assert response.status_code == 202
    assert response.json() == {"syncRequested": True}


@pytest.mark.parametrize("how", ["health", "accounts", "balances"])
async def test_a_clean_answer_repairs_a_connection_that_needed_the_user(
    api: Api, emulator_control: httpx.AsyncClient, how: str
) -> None:
    item_id: str = (await api.connect())["itemId"]
    await _break_login(api, item_id)
    refused = await api.client.post(f"{BASE}/connections/{item_id}/sync", headers=api.auth())
    assert (refused.status_code, refused.json()["error"]["needsReauth"]) == (409, True)
    # The user repairs the Item in update mode; its LOGIN_REPAIRED webhook never arrives.
    repaired = await emulator_control.post(f"/emulator/items/{item_id}/repair")
    assert repaired.json()["repaired"] is True
    await _forget_sync_requests(api)

    if how == "health":
        response = await api.client.get(
            f"{BASE}/connections/{item_id}/health", params={"live": "true"}, headers=api.auth()
        )
        assert response.status_code == 200
        health = response.json()
        assert (health["status"], health["needsReauth"], health["errorCode"]) == (
            "HEALTHY",
            False,
            None,
        )
    else:
        refresh = "true" if how == "accounts" else "balance"
        response = await api.client.get(
            f"{BASE}/accounts/{item_id}", params={"refresh": refresh}, headers=api.auth()
        )
        assert response.status_code == 200
        assert response.json()

    assert await _connection(api, item_id) == ("ACTIVE", None)
    events, audited = await _repairs(api, item_id)
    assert len(events) == 1
    assert events[0]["data"]["previousStatus"] == "LOGIN_REQUIRED"
    assert [a["details"]["from"] for a in audited] == ["LOGIN_REQUIRED"]
    assert await _sync_requested(api, item_id) is not None
    accepted = await api.client.post(f"{BASE}/connections/{item_id}/sync", headers=api.auth())
    assert accepted.status_code == 202
    # Asked again: nothing more to repair, no second event.
    again = await api.client.get(
        f"{BASE}/connections/{item_id}/health", params={"live": "true"}, headers=api.auth()
    )
    assert again.json()["status"] == "HEALTHY"
    assert len((await _repairs(api, item_id))[0]) == 1


@pytest.mark.parametrize("how", ["health", "accounts"])
async def test_a_clean_answer_repairs_a_connection_in_error(api: Api, how: str) -> None:
    item_id: str = (await api.connect())["itemId"]
    await _set(api, item_id, status="ERROR", error_code="INSTITUTION_DOWN", error_message="down")
    before = (
        await api.client.get(f"{BASE}/connections/{item_id}/health", headers=api.auth())
    ).json()
    assert before["status"] == "CRITICAL"

    if how == "health":
        response = await api.client.get(
            f"{BASE}/connections/{item_id}/health", params={"live": "true"}, headers=api.auth()
        )
        assert response.json()["status"] == "HEALTHY"
    else:
        response = await api.client.get(
            f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
        )
    assert response.status_code == 200

    assert await _connection(api, item_id) == ("ACTIVE", None)
    events, audited = await _repairs(api, item_id)
    assert [e["data"]["previousStatus"] for e in events] == ["ERROR"]
    assert [a["details"]["from"] for a in audited] == ["ERROR"]


async def test_a_clean_answer_leaves_other_statuses_alone(api: Api) -> None:
    item_id: str = (await api.connect())["itemId"]
    await _set(api, item_id, status="PENDING_EXPIRATION")
    response = await api.client.get(
        f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
    )
    assert response.status_code == 200
    assert await _connection(api, item_id) == ("PENDING_EXPIRATION", None)
    assert await _repairs(api, item_id) == ([], [])


async def test_a_live_check_that_still_sees_the_error_repairs_nothing(api: Api) -> None:
    item_id: str = (await api.connect())["itemId"]
    await _break_login(api, item_id)
    response = await api.client.get(
        f"{BASE}/connections/{item_id}/health", params={"live": "true"}, headers=api.auth()
    )
    health = response.json()
    assert (health["status"], health["needsReauth"]) == ("CRITICAL", True)
    assert await _connection(api, item_id) == ("LOGIN_REQUIRED", "ITEM_LOGIN_REQUIRED")
    assert await _repairs(api, item_id) == ([], [])
