"""Health through the HTTP API: one connection (stored and live), the org summary, the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from plaid_bridge import cli
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import sync_url, utcnow
from tests.conftest import Api

BASE = "/api/v1/plaid"


async def _set(api: Api, item_id: str, **values: Any) -> None:
    async with api.services.database.transaction() as session:
        await session.execute(
            update(PlaidConnection).where(PlaidConnection.item_id == item_id).values(**values)
        )


async def _access_token(api: Api, item_id: str) -> str:
    async with api.services.database.transaction() as session:
        row = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
        assert row is not None
        return api.services.cipher.decrypt(row.access_token_encrypted or "", item_id)


async def _health(
    api: Api, item_id: str, *, role: str = "VIEWER", org: str = "o1", live: bool = False
) -> httpx.Response:
    return await api.client.get(
        f"{BASE}/connections/{item_id}/health",
        params={"live": "true"} if live else None,
        headers=api.auth(org=org, role=role),
    )


@pytest.mark.anyio
async def test_viewer_reads_health_of_a_new_connection(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    response = await _health(api, item_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["itemId"] == item_id
    assert (body["status"], body["severity"], body["healthy"]) == ("HEALTHY", "info", True)
    assert (body["needsReauth"], body["actionRequired"]) == (False, False)
    assert body["error"] is None
    assert body["errorCode"] is None


@pytest.mark.anyio
async def test_health_of_another_orgs_or_unknown_connection_is_404(api: Api) -> None:
    item_id = (await api.connect(org="o1"))["itemId"]
    other = await _health(api, item_id, org="o2", role="OWNER")
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "CONNECTION_NOT_FOUND"
    missing = await _health(api, "no-such-item")
    assert missing.status_code == 404
    unauthenticated = await api.client.get(f"{BASE}/connections/{item_id}/health")
    assert unauthenticated.status_code == 401


@pytest.mark.anyio
async def test_stored_state_drives_the_verdict(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    await _set(api, item_id, last_synced_at=utcnow() - timedelta(days=8))
    stale = (await _health(api, item_id)).json()
    assert (stale["status"], stale["actionRequired"]) == ("WARNING", True)
    await _set(api, item_id, status="ERROR", error_code="ITEM_LOCKED", error_message="locked")
    locked = (await _health(api, item_id)).json()
    assert (locked["status"], locked["errorCode"], locked["error"]) == (
        "CRITICAL",
        "ITEM_LOCKED",
        "locked",
    )


@pytest.mark.anyio
async def test_live_check_records_login_required(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    await api.services.plaid.sandbox_reset_login(access_token=await _access_token(api, item_id))
    stored = (await _health(api, item_id)).json()
    assert stored["status"] == "HEALTHY"  # nothing has told the service yet

    live = await _health(api, item_id, live=True)
    assert live.status_code == 200, live.text
    body = live.json()
    assert (body["status"], body["needsReauth"], body["errorCode"]) == (
        "CRITICAL",
        True,
        "ITEM_LOGIN_REQUIRED",
    )
    listed = (await api.client.get(f"{BASE}/connections", headers=api.auth())).json()
    assert listed[0]["status"] == "LOGIN_REQUIRED"
    events = (await api.client.get(f"{BASE}/events", headers=api.auth())).json()["events"]
    assert [event["type"] for event in events if event["itemId"] == item_id][-1] == (
        "connection.needs_reauth"
    )
    again = (await _health(api, item_id)).json()
    assert (again["status"], again["needsReauth"]) == ("CRITICAL", True)


@pytest.mark.anyio
async def test_live_check_failing_transiently_never_reports_reauth(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = (await api.connect())["itemId"]
    fault = await emulator_control.post(
        "/emulator/faults",
        json={"endpoint": "/item/get", "errorCode": "INTERNAL_SERVER_ERROR", "count": 10},
    )
    assert fault.status_code == 201, fault.text
    response = await _health(api, item_id, live=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["needsReauth"] is False
    assert body["status"] == "HEALTHY"
    assert "live check" in body["message"]
    calls = (await emulator_control.get("/emulator/calls", params={"endpoint": "/item/get"})).json()
    assert any(call["errorCode"] == "INTERNAL_SERVER_ERROR" for call in calls["calls"])
    listed = (await api.client.get(f"{BASE}/connections", headers=api.auth())).json()
    assert listed[0]["status"] == "ACTIVE"


@pytest.mark.anyio
async def test_removed_connection_is_unknown_and_never_asked_live(
    api: Api, emulator_control: httpx.AsyncClient
) -> None:
    item_id = (await api.connect())["itemId"]
    removed = await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth())
    assert removed.status_code == 200, removed.text
    before = (
        await emulator_control.get("/emulator/calls", params={"endpoint": "/item/get"})
    ).json()
    body = (await _health(api, item_id, live=True)).json()
    assert (body["status"], body["needsReauth"]) == ("UNKNOWN", False)
    after = (await emulator_control.get("/emulator/calls", params={"endpoint": "/item/get"})).json()
    assert after["count"] == before["count"]


@pytest.mark.anyio
async def test_org_summary_counts_live_connections_of_the_org(api: Api) -> None:
    healthy = (await api.connect())["itemId"]
    login = (await api.connect())["itemId"]
    stale = (await api.connect())["itemId"]
    removed = (await api.connect())["itemId"]
    await api.connect(org="o2")
    await _set(api, login, status="LOGIN_REQUIRED", error_code="ITEM_LOGIN_REQUIRED")
    await _set(api, stale, last_synced_at=utcnow() - timedelta(days=4))
    await _set(api, removed, status="REMOVED")

    response = await api.client.get(f"{BASE}/health/summary", headers=api.auth(role="ADMIN"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "total": 3,
        "healthy": 1,
        "needsReauth": 1,
        "errors": 1,
        "healthPercentage": 33.3,
        "byStatus": {"HEALTHY": 1, "WARNING": 1, "CRITICAL": 1, "UNKNOWN": 0},
    }
    assert (await _health(api, healthy)).json()["healthy"] is True


@pytest.mark.anyio
async def test_summary_needs_admin_and_an_empty_org_is_100_percent(api: Api) -> None:
    member = await api.client.get(f"{BASE}/health/summary", headers=api.auth(role="MEMBER"))
    assert member.status_code == 403
    assert member.json()["error"]["code"] == "FORBIDDEN"
    empty = await api.client.get(f"{BASE}/health/summary", headers=api.auth(org="o9"))
    assert empty.status_code == 200
    assert empty.json()["total"] == 0
    assert empty.json()["healthPercentage"] == 100.0


def test_cli_prints_one_summary_per_org(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = create_engine(sync_url(database_url))
    now = utcnow()
    rows = [
        ("o1", "item-a", "ACTIVE", None, now),
        ("o1", "item-b", "LOGIN_REQUIRED", "ITEM_LOGIN_REQUIRED", now),
        ("o2", "item-c", "ACTIVE", None, now - timedelta(days=9)),
        ("o3", "item-d", "REMOVED", None, now),
    ]
    with Session(engine) as session, session.begin():
        for org_id, item_id, status, code, synced in rows:
            session.add(
                PlaidConnection(
                    org_id=org_id,
                    user_id="u1",
                    item_id=item_id,
                    status=status,
                    error_code=code,
                    last_synced_at=synced,
                )
            )
    engine.dispose()
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PLAID_ENV", "emulator")

    assert cli.main(["health-summary"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["orgId"], line["total"], line["healthy"]) for line in lines] == [
        ("o1", 2, 1),
        ("o2", 1, 0),
        ("o3", 0, 0),
    ]
    assert lines[0]["needsReauth"] == 1
    assert lines[1]["byStatus"]["WARNING"] == 1
    assert lines[2]["healthPercentage"] == 100.0
