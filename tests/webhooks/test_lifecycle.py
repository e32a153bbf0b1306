"""The connection lifecycle end to end over real HTTP: the emulator's signed webhooks reach the
app under uvicorn, whose embedded worker applies them (SPEC sections 5b and 6)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from plaid_bridge.app import create_app
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.connections.tokens import decrypt_access_token
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.services import build_services
from plaid_bridge.serving import BackgroundServer
from plaid_bridge.sync.models import SyncRequest
from plaid_bridge.webhooks.models import WebhookEvent
from tests.conftest import Api, make_settings
from tests.waiting import eventually
from tests.webhooks.conftest import WEBHOOK_PATH

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
WAIT_SECONDS = 20.0


@dataclass
class Live:
    """The app served by uvicorn with its embedded worker; `api` talks to it over HTTP and
    reads the database through services of its own."""

    api: Api
    emulator: httpx.AsyncClient
    url: str

    async def token(self, item_id: str) -> str:
        async with self.api.services.database.transaction() as session:
            found = await session.scalar(
                select(PlaidConnection).where(PlaidConnection.item_id == item_id)
            )
            assert found is not None
            return await decrypt_access_token(found, cipher=self.api.services.cipher)

    async def linked(self) -> str:
        """A new connection, once its initial sync and the webhooks that caused have run (a
        successful sync clears a transient ERROR, so it must not race the webhook under test)."""
        item_id: str = (await self.api.connect())["itemId"]

        async def probe() -> bool:
            drained = await self.emulator.get("/emulator/webhooks", params={"wait": "true"})
            assert drained.status_code == 200, drained.text
            async with self.api.services.database.transaction() as session:
                synced = await session.scalar(
                    select(PlaidConnection.last_synced_at).where(PlaidConnection.item_id == item_id)
                )
                requests = await session.scalar(select(func.count()).select_from(SyncRequest))
                unfinished = await session.scalar(
                    select(func.count())
                    .select_from(WebhookEvent)
                    .where(WebhookEvent.status.in_(("PENDING", "PROCESSING")))
                )
            return synced is not None and requests == 0 and unfinished == 0

        await eventually(probe, "the initial sync", within=WAIT_SECONDS)
        return item_id

    async def settled(self, stored: int) -> None:
        """Wait until at least `stored` webhooks are in the inbox and none is left to do."""

        async def probe() -> bool:
            async with self.api.services.database.transaction() as session:
                counts = dict(
                    (
                        await session.execute(
                            select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status)
                        )
                    ).all()
                )
            open_ = counts.get("PENDING", 0) + counts.get("PROCESSING", 0)
            return sum(counts.values()) >= stored and open_ == 0

        await eventually(probe, f"{stored} webhooks processed", within=WAIT_SECONDS)

    async def inbox_size(self) -> int:
        async with self.api.services.database.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)

    async def connection(self, item_id: str) -> dict[str, Any]:
        listed = await self.api.client.get(
            f"{BASE}/connections", headers=self.api.auth(role="VIEWER")
        )
        assert listed.status_code == 200, listed.text
        [found] = [c for c in listed.json() if c["itemId"] == item_id]
        result: dict[str, Any] = found
        return result

    async def event_types(self, item_id: str) -> list[str]:
        page = await self.api.client.get(
            f"{BASE}/events", params={"limit": 500}, headers=self.api.auth(role="VIEWER")
        )
        assert page.status_code == 200, page.text
        return [e["type"] for e in page.json()["events"] if e["itemId"] == item_id]


@pytest.fixture
async def live(
    database_url: str,
    emulator: EmulatorServer,
    emulator_control: httpx.AsyncClient,
    tmp_path: Path,
) -> AsyncIterator[Live]:
    with BackgroundServer() as server:
        settings = make_settings(
            database_url=database_url,
            plaid_api_host=emulator.url,
            var_dir=tmp_path / "var",
            plaid_webhook_url=f"{server.url}{WEBHOOK_PATH}",
            worker_mode="embedded",
        )
        app = create_app(settings)
        server.serve(app)
        services = build_services(settings)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=15.0) as client:
                yield Live(Api(client, app, services), emulator_control, server.url)
        finally:
            services.plaid.close()
            await services.database.dispose()


async def test_login_required_then_repaired_without_the_client(live: Live) -> None:
    item_id = await live.linked()
    plaid = live.api.services.plaid

    before = await live.inbox_size()
    await plaid.sandbox_reset_login(access_token=await live.token(item_id))
    await live.settled(before + 1)
    broken = await live.connection(item_id)
    assert broken["status"] == "LOGIN_REQUIRED"
    assert broken["error"]["code"] == "ITEM_LOGIN_REQUIRED"
    assert (await live.event_types(item_id)).count("connection.needs_reauth") == 1

    before = await live.inbox_size()
    repaired = await live.emulator.post(f"/emulator/items/{item_id}/repair")
    assert repaired.status_code == 200, repaired.text
    await live.settled(before + 1)
    healthy = await live.connection(item_id)
    assert healthy["status"] == "ACTIVE"
    assert healthy.get("error") is None
    assert (await live.event_types(item_id)).count("connection.repaired") == 1

    # Broken again within 24 hours: the status follows, the user is not notified twice.
    before = await live.inbox_size()
    await plaid.sandbox_reset_login(access_token=await live.token(item_id))
    await live.settled(before + 1)
    assert (await live.connection(item_id))["status"] == "LOGIN_REQUIRED"
    assert (await live.event_types(item_id)).count("connection.needs_reauth") == 1


async def test_login_required_then_reauth_through_the_client(live: Live) -> None:
    item_id = await live.linked()
    plaid = live.api.services.plaid
    headers = live.api.auth(role="MEMBER")

    before = await live.inbox_size()
    await plaid.sandbox_reset_login(access_token=await live.token(item_id))
    await live.settled(before + 1)
    health = await live.api.client.get(f"{BASE}/connections/{item_id}/health", headers=headers)
    assert health.json()["status"] == "CRITICAL"
    assert health.json()["needsReauth"] is True
    # A second ERROR webhook within 24 hours: no second notification.
    before = await live.inbox_size()
    await plaid.sandbox_fire_webhook(
        access_token=await live.token(item_id), webhook_code="ERROR", webhook_type="ITEM"
    )
    await live.settled(before + 1)
    assert (await live.event_types(item_id)).count("connection.needs_reauth") == 1

    link = await live.api.client.post(
        f"{BASE}/connections/{item_id}/reauth", json={}, headers=headers
    )
    assert link.status_code == 201, link.text
    too_soon = await live.api.client.post(
        f"{BASE}/connections/{item_id}/reauth/complete", headers=headers
    )
    assert too_soon.status_code == 409
    assert too_soon.json()["error"]["needsReauth"] is True

    finished = await live.emulator.post(
        "/emulator/link/complete", json={"linkToken": link.json()["linkToken"]}
    )
    assert finished.status_code == 200, finished.text
    done = await live.api.client.post(
        f"{BASE}/connections/{item_id}/reauth/complete", headers=headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "ACTIVE"
    assert (await live.connection(item_id))["status"] == "ACTIVE"
    assert (await live.event_types(item_id)).count("connection.repaired") == 1
    health = await live.api.client.get(f"{BASE}/connections/{item_id}/health", headers=headers)
    assert health.json()["needsReauth"] is False


async def test_a_bank_outage_is_an_error_without_reauth(
    live: Live, emulator: EmulatorServer
) -> None:
    item_id = await live.linked()
    # The emulator only fires login errors; sign an outage with its webhook key as Plaid would.
    body = json.dumps(
        {
            "webhook_type": "ITEM",
            "webhook_code": "ERROR",
            "item_id": item_id,
            "error": {
                "error_type": "INSTITUTION_ERROR",
                "error_code": "INSTITUTION_DOWN",
                "error_message": "this institution is not currently responding",
                "display_message": "The bank is temporarily unavailable.",
                "status": 400,
            },
            "environment": "sandbox",
        },
        indent=2,
    ).encode()
    signature = emulator.app.state.emulator.keys.sign(body)
    before = await live.inbox_size()
    async with httpx.AsyncClient(base_url=live.url) as client:
        delivered = await client.post(
            WEBHOOK_PATH,
            content=body,
            headers={"Content-Type": "application/json", "Plaid-Verification": signature},
        )
    assert delivered.status_code == 200, delivered.text
    await live.settled(before + 1)

    found = await live.connection(item_id)
    assert found["status"] == "ERROR"
    assert found["error"]["code"] == "INSTITUTION_DOWN"
    health = await live.api.client.get(
        f"{BASE}/connections/{item_id}/health", headers=live.api.auth(role="VIEWER")
    )
    assert health.status_code == 200, health.text
    assert health.json()["needsReauth"] is False
    types = await live.event_types(item_id)
    assert "connection.error" in types
    assert "connection.needs_reauth" not in types


async def test_permission_revoked(live: Live) -> None:
    item_id = await live.linked()
    before = await live.inbox_size()
    await live.api.services.plaid.sandbox_fire_webhook(
        access_token=await live.token(item_id), webhook_code="USER_PERMISSION_REVOKED"
    )
    await live.settled(before + 1)
    assert (await live.connection(item_id))["status"] == "REVOKED"
    assert (await live.event_types(item_id)).count("connection.revoked") == 1


async def test_pending_disconnect_sets_the_deadline(live: Live) -> None:
    item_id = await live.linked()
    before = await live.inbox_size()
    await live.api.services.plaid.sandbox_fire_webhook(
        access_token=await live.token(item_id), webhook_code="PENDING_DISCONNECT"
    )
    await live.settled(before + 1)

    sent = await live.emulator.get("/emulator/webhooks", params={"item_id": item_id})
    [notice] = [
        json.loads(record["body"])
        for record in sent.json()["webhooks"]
        if record["webhookCode"] == "PENDING_DISCONNECT"
    ]
    found = await live.connection(item_id)
    assert found["status"] == "PENDING_EXPIRATION"
    deadline = datetime.fromisoformat(notice["disconnect_time"])
    assert datetime.fromisoformat(found["consentExpiresAt"]) == deadline
    assert (await live.event_types(item_id)).count("connection.pending_expiration") == 1
