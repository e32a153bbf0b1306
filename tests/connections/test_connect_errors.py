"""Bad input, Plaid's errors and partial failures: clear errors, and nothing half-written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def _count_rows(api: Api) -> tuple[int, int]:
    async with api.services.database.transaction() as session:
        connections = await session.scalar(select(func.count()).select_from(PlaidConnection))
        accounts = await session.scalar(select(func.count()).select_from(PlaidAccount))
    return connections or 0, accounts or 0


async def _calls(control: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    response = await control.get("/emulator/calls", params={"endpoint": endpoint})
    calls: list[dict[str, Any]] = response.json()["calls"]
    return calls


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"products": ["auth"]}, "INVALID_PRODUCTS"),
        ({"products": []}, "INVALID_PRODUCTS"),
        ({"countryCodes": ["FR"]}, "INVALID_COUNTRY_CODES"),
        ({"webhookUrl": "https://evil.example/hook"}, "INVALID_FIELD"),
        ({"clientName": "Someone Else"}, "INVALID_FIELD"),
        ({"products": "transactions"}, "VALIDATION_ERROR"),
    ],
)
async def test_link_token_outside_configuration_is_400(
    api: Api, body: dict[str, Any], code: str
) -> None:
    response = await api.client.post(
        f"{BASE}/create-link-token", json=body, headers=api.auth(role="MEMBER")
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["needsReauth"] is False
    assert "plaid" not in error


async def test_malformed_bodies_get_the_envelope(api: Api) -> None:
    headers = {**api.auth(), "Content-Type": "application/json"}
    for content in (b"{not json", b"[]", b'{"publicToken": 5}', b"{}"):
        response = await api.client.post(f"{BASE}/exchange-token", content=content, headers=headers)
        assert response.status_code == 400, (content, response.text)
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert await _count_rows(api) == (0, 0)


async def test_unknown_routes_and_methods_get_the_envelope(api: Api) -> None:
    missing = await api.client.get(f"{BASE}/nope", headers=api.auth())
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = await api.client.put(f"{BASE}/connections", headers=api.auth())
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_request_id_is_echoed_or_made(api: Api) -> None:
    mine = await api.client.get("/healthz", headers={"X-Request-ID": "req-123"})
    assert mine.headers["x-request-id"] == "req-123"
    hostile = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\x7f" * 40})
    assert hostile.headers["x-request-id"] not in ("", "bad id\x7f" * 40)


async def test_duplicate_institution_is_409_unless_allowed(api: Api) -> None:
    first = await api.connect()
    response = await api.client.post(
        f"{BASE}/exchange-token",
        json={"publicToken": await api.public_token(), "institutionId": "ins_109508"},
        headers=api.auth(role="MEMBER"),
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "DUPLICATE_ITEM"
    assert error["itemId"] == first["itemId"]
    allowed = await api.client.post(
        f"{BASE}/exchange-token",
        json={
            "publicToken": await api.public_token(),
            "institutionId": "ins_109508",
            "allowDuplicate": True,
        },
        headers=api.auth(role="MEMBER"),
    )
    assert allowed.status_code == 201
    other_bank = await api.client.post(
        f"{BASE}/exchange-token",
        json={"publicToken": await api.public_token("ins_109509"), "institutionId": "ins_109509"},
        headers=api.auth(role="MEMBER"),
    )
    assert other_bank.status_code == 201
    actions = (await api.client.get(f"{BASE}/audit", headers=api.auth())).json()["entries"]
    failures = [entry for entry in actions if entry["outcome"] == "FAILURE"]
    assert [(entry["action"], entry["errorCode"]) for entry in failures] == [
        ("TOKEN_EXCHANGED", "DUPLICATE_ITEM")
    ]


async def test_login_required_is_409_with_needs_reauth(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    async with api.services.database.transaction() as session:
        row = (await session.scalars(select(PlaidConnection))).one()
        token = api.services.cipher.decrypt(row.access_token_encrypted or "", item_id)
    await api.services.plaid.sandbox_reset_login(access_token=token)
    response = await api.client.get(
        f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "ITEM_LOGIN_REQUIRED"
    assert error["needsReauth"] is True
    assert error["plaid"]["errorType"] == "ITEM_ERROR"
    assert error["plaid"]["requestId"]
    listed = (await api.client.get(f"{BASE}/connections", headers=api.auth())).json()
    assert listed[0]["status"] == "LOGIN_REQUIRED"
    assert listed[0]["error"]["code"] == "ITEM_LOGIN_REQUIRED"
    stored = await api.client.get(f"{BASE}/accounts/{item_id}", headers=api.auth())
    assert stored.status_code == 200


async def test_plaid_rate_limit_is_429_with_retry_after(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = (await api.connect())["itemId"]
    await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": "/accounts/get", "errorCode": "RATE_LIMIT_EXCEEDED", "count": 10},
    )
    response = await api.client.get(
        f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
    )
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["retryAfter"] == int(response.headers["retry-after"])
    assert error["plaid"]["errorType"] == "RATE_LIMIT_EXCEEDED"


async def test_institution_down_is_503(api: Api, emulator_control: httpx.AsyncClient) -> None:
    item_id = (await api.connect())["itemId"]
    await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": "/accounts/balance/get", "errorCode": "INSTITUTION_DOWN", "count": 1},
    )
    response = await api.client.get(
        f"{BASE}/accounts/{item_id}", params={"refresh": "balance"}, headers=api.auth()
    )
    assert response.status_code == 503
    assert response.json()["error"]["needsReauth"] is False
    assert response.headers["retry-after"]
    listed = (await api.client.get(f"{BASE}/connections", headers=api.auth())).json()
    assert listed[0]["status"] == "ACTIVE"


async def test_failed_exchange_leaves_no_row(api: Api, emulator_control: httpx.AsyncClient) -> None:
    await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": "/item/public_token/exchange", "errorCode": "INTERNAL_SERVER_ERROR"},
    )
    response = await api.client.post(
        f"{BASE}/exchange-token",
        json={"publicToken": await api.public_token()},
        headers=api.auth(role="MEMBER"),
    )
    assert response.status_code == 502
    assert response.json()["error"]["plaid"]["errorCode"] == "INTERNAL_SERVER_ERROR"
    assert await _count_rows(api) == (0, 0)


async def test_failed_accounts_fetch_removes_the_new_item(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": "/accounts/get", "errorCode": "INSTITUTION_DOWN", "count": 1},
    )
    before = len(await _calls(emulator_control, "/item/remove"))
    response = await api.client.post(
        f"{BASE}/exchange-token",
        json={"publicToken": await api.public_token()},
        headers=api.auth(role="MEMBER"),
    )
    assert response.status_code == 503
    assert await _count_rows(api) == (0, 0)
    removals = await _calls(emulator_control, "/item/remove")
    assert len(removals) == before + 1
    assert removals[-1]["status"] == 200


async def test_database_failure_after_exchange_removes_the_item(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    async with api.services.database.transaction() as session:
        if api.services.database.dialect == "sqlite":
            await session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON plaid_accounts "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            )
        else:
            await session.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
                )
            )
            await session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON plaid_accounts "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
    before = len(await _calls(emulator_control, "/item/remove"))
    response = await api.client.post(
        f"{BASE}/exchange-token",
        json={"publicToken": await api.public_token()},
        headers=api.auth(role="MEMBER"),
    )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "disk full" not in response.text
    assert await _count_rows(api) == (0, 0)
    removals = await _calls(emulator_control, "/item/remove")
    assert len(removals) == before + 1
    audit = (await api.client.get(f"{BASE}/audit", headers=api.auth())).json()["entries"]
    assert [(e["action"], e["outcome"]) for e in audit] == [("TOKEN_EXCHANGED", "FAILURE")]
