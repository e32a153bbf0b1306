"""End to end over real HTTP: the emulator signs with its own key and posts to the app under
uvicorn, which fetches that key from the emulator and stores the webhook."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from sqlalchemy import select

from plaid_bridge.db import Database
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.plaid.client import PlaidClient
from plaid_bridge.webhooks.models import WebhookEvent
from tests.webhooks.conftest import LiveApp

pytestmark = pytest.mark.anyio


async def test_emulator_webhooks_verify_and_are_stored(
    live_app: LiveApp, database: Database, emulator: EmulatorServer
) -> None:
    async with PlaidClient.from_settings(live_app.settings) as plaid:
        created = await plaid.sandbox_public_token_create(institution_id="ins_109508")
        item = await plaid.exchange_public_token(public_token=created.public_token)
        # Both calls return once the emulator's delivery has been answered.
        await plaid.sandbox_fire_webhook(
            access_token=item.access_token, webhook_code="DEFAULT_UPDATE"
        )
        await plaid.sandbox_reset_login(access_token=item.access_token)

    async with database.transaction() as session:
        stored = list(
            await session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.item_id == item.item_id)
                .order_by(WebhookEvent.id)
            )
        )
    assert [(e.webhook_type, e.webhook_code) for e in stored] == [
        ("TRANSACTIONS", "DEFAULT_UPDATE"),
        ("ITEM", "ERROR"),
    ]
    async with httpx.AsyncClient(base_url=emulator.url, trust_env=False) as control:
        sent = (await control.get("/emulator/webhooks")).json()["webhooks"]
    delivered = [w for w in sent if w["itemId"] == item.item_id]
    assert [w["statusCode"] for w in delivered] == [200, 200]
    assert [w["url"] for w in delivered] == [live_app.settings.webhook_url] * 2
    for event, record in zip(stored, delivered, strict=True):
        assert event.body == record["body"]  # byte for byte, pretty-printed as Plaid sends it
        assert event.body_sha256 == hashlib.sha256(record["body"].encode()).hexdigest()
