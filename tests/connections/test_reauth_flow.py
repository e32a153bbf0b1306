"""Re-authentication end to end on the emulator: login breaks, update-mode Link, confirmation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.sync.models import SyncRequest
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def _access_token(api: Api, item_id: str) -> str:
    async with api.services.database.transaction() as session:
        row = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
        assert row is not None
        return api.services.cipher.decrypt(row.access_token_encrypted or "", item_id)


async def _link_token_requests(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await control.get("/emulator/calls", params={"endpoint": "/link/token/create"})
    return [call["request"] for call in response.json()["calls"]]


async def _reauth(api: Api, item_id: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return await api.client.post(
        f"{BASE}/connections/{item_id}/reauth", json=body, headers=api.auth(role="MEMBER")
    )


async def _complete(api: Api, item_id: str) -> httpx.Response:
    return await api.client.post(
        f"{BASE}/connections/{item_id}/reauth/complete", headers=api.auth(role="MEMBER")
    )


async def _audit(api: Api) -> list[tuple[str, str, str | None]]:
    entries = (await api.client.get(f"{BASE}/audit", headers=api.auth())).json()["entries"]
    return [(entry["action"], entry["outcome"], entry["errorCode"]) for entry in entries]


async def test_login_break_and_repair_through_update_mode(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = (await api.connect())["itemId"]
    access_token = await _access_token(api, item_id)
    await api.services.plaid.sandbox_reset_login(access_token=access_token)

    broken = await api.client.get(
        f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
    )
    assert broken.status_code == 409
    listed = (await api.client.get(f"{BASE}/connections", headers=api.auth())).json()
    assert listed[0]["status"] == "LOGIN_REQUIRED"
    health = (
        await api.client.get(f"{BASE}/connections/{item_id}/health", headers=api.auth())
    ).json()
    assert (health["status"], health["needsReauth"]) == ("CRITICAL", True)

    link = await _reauth(api, item_id)
    assert link.status_code == 201, link.text
    assert set(link.json()) == {"linkToken", "expiration"}
    link_token = link.json()["linkToken"]
    sent = (await _link_token_requests(emulator_control))[-1]
    assert sent["access_token"] == access_token
    assert "products" not in sent
    assert "update" not in sent  # no account selection unless asked for

    early = await _complete(api, item_id)
    assert early.status_code == 409, early.text
    error = early.json()["error"]
    assert (error["code"], error["needsReauth"]) == ("ITEM_LOGIN_REQUIRED", True)
    assert error["plaid"]["errorType"] == "ITEM_ERROR"

    repaired = await emulator_control.post(
        "/emulator/link/complete", json={"linkToken": link_token}
    )
    assert repaired.status_code == 200, repaired.text
    # The initial sync has been handled; the repair must queue a new one.
    async with api.services.database.transaction() as session:
        await session.execute(delete(SyncRequest).where(SyncRequest.item_id == item_id))

    done = await _complete(api, item_id)
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["itemId"], body["status"], body["error"]) == (item_id, "ACTIVE", None)
    assert body["newAccountsAvailable"] is False

    events = (await api.client.get(f"{BASE}/events", headers=api.auth())).json()["events"]
    assert [event["type"] for event in events if event["itemId"] == item_id][-1] == (
        "connection.repaired"
    )
    async with api.services.database.transaction() as session:
        queued = await session.get(SyncRequest, item_id)
        assert queued is not None
        assert (queued.state, queued.reason) == ("QUEUED", "reauth")
    health = (
        await api.client.get(f"{BASE}/connections/{item_id}/health", headers=api.auth())
    ).json()
    assert (health["status"], health["needsReauth"]) == ("HEALTHY", False)

    audited = await _audit(api)
    assert ("REAUTH_LINK_TOKEN_CREATED", "SUCCESS", None) in audited
    assert ("REAUTH_COMPLETED", "FAILURE", "ITEM_LOGIN_REQUIRED") in audited
    assert ("REAUTH_COMPLETED", "SUCCESS", None) in audited


async def test_account_selection_when_asked_or_when_plaid_announced_accounts(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = (await api.connect())["itemId"]
    asked = await _reauth(api, item_id, {"accountSelection": True})
    assert asked.status_code == 201, asked.text
    sent = (await _link_token_requests(emulator_control))[-1]
    assert sent["update"] == {"account_selection_enabled": True}

    async with api.services.database.transaction() as session:
        await session.execute(
            update(PlaidConnection)
            .where(PlaidConnection.item_id == item_id)
            .values(new_accounts_available=True)
        )
    announced = await _reauth(api, item_id)
    assert announced.status_code == 201, announced.text
    sent = (await _link_token_requests(emulator_control))[-1]
    assert sent["update"] == {"account_selection_enabled": True}

    # Completing (nothing was broken) refreshes the accounts and clears the flag.
    done = await _complete(api, item_id)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["newAccountsAvailable"]) == ("ACTIVE", False)


async def test_reauth_roles_tenants_and_dead_connections(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    viewer = await api.client.post(
        f"{BASE}/connections/{item_id}/reauth", headers=api.auth(role="VIEWER")
    )
    assert viewer.status_code == 403
    other_org = await api.client.post(
        f"{BASE}/connections/{item_id}/reauth/complete", headers=api.auth(org="o2")
    )
    assert other_org.status_code == 404

    async with api.services.database.transaction() as session:
        await session.execute(
            update(PlaidConnection)
            .where(PlaidConnection.item_id == item_id)
            .values(status="REVOKED", error_code="USER_PERMISSION_REVOKED")
        )
    revoked = await _reauth(api, item_id)
    assert revoked.status_code == 409
    assert (revoked.json()["error"]["code"], revoked.json()["error"]["needsReauth"]) == (
        "CONNECTION_REVOKED",
        False,
    )

    removed = await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth())
    assert removed.status_code == 200, removed.text
    gone = await _reauth(api, item_id)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "CONNECTION_REMOVED"


async def test_complete_when_plaid_reports_revoked_is_409_and_recorded(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    await api.services.plaid.sandbox_fire_webhook(
        access_token=await _access_token(api, item_id), webhook_code="USER_PERMISSION_REVOKED"
    )
    response = await _complete(api, item_id)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert (error["code"], error["needsReauth"]) == ("USER_PERMISSION_REVOKED", False)
    listed = (await api.client.get(f"{BASE}/connections", headers=api.auth())).json()
    assert listed[0]["status"] == "REVOKED"
    health = (
        await api.client.get(f"{BASE}/connections/{item_id}/health", headers=api.auth())
    ).json()
    assert (health["status"], health["needsReauth"]) == ("CRITICAL", False)


async def test_complete_while_the_bank_is_down_changes_nothing(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = (await api.connect())["itemId"]
    await api.services.plaid.sandbox_reset_login(access_token=await _access_token(api, item_id))
    fault = await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": "/item/get", "errorCode": "INSTITUTION_DOWN", "count": 1},
    )
    assert fault.status_code == 201, fault.text
    down = await _complete(api, item_id)
    assert down.status_code == 503
    assert down.json()["error"]["needsReauth"] is False
    listed = (await api.client.get(f"{BASE}/connections", headers=api.auth())).json()
    assert listed[0]["status"] == "ACTIVE"  # never recorded from a transient failure
