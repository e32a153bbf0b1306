"""A flood of forged webhooks naming made-up `kid`s, against the app under uvicorn verifying with
the emulator's real keys: Plaid's key endpoint is asked at most at the configured rate, every
forgery is refused, nothing is logged as an error, and genuine webhooks signed by the emulator and
delivered during the flood are all accepted."""

from __future__ import annotations

import asyncio
import logging
import math
import time

import httpx
import pytest
from sqlalchemy import func, select

from plaid_bridge.db import Database
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.plaid.client import PlaidClient
from plaid_bridge.webhooks.models import WebhookEvent
from tests.webhooks.conftest import WEBHOOK_PATH, LiveApp, SigningKey, webhook_body

pytestmark = pytest.mark.anyio

KEY_ENDPOINT = "/webhook_verification_key/get"
FORGERIES = 300
CONCURRENT = 20
# Genuine deliveries during the flood, each of its own code: two identical bodies signed in the
# same second are one signed token, which the inbox stores once (test_intake_duplicates.py).
GENUINE = ("INITIAL_UPDATE", "HISTORICAL_UPDATE", "SYNC_UPDATES_AVAILABLE", "TRANSACTIONS_REMOVED")


async def _key_fetches(control: httpx.AsyncClient) -> int:
    answer = await control.get("/emulator/calls", params={"endpoint": KEY_ENDPOINT})
    count: int = answer.json()["count"]
    return count


async def _forge(client: httpx.AsyncClient, gate: asyncio.Semaphore, n: int) -> int:
    """A webhook signed by a key nobody published, under a fresh kid: only Plaid could say
    the kid is unknown, so each one would cost a key fetch if fetches were not bounded."""
    body = webhook_body(item_id=f"forged-{n}")
    async with gate:
        response = await client.post(
            WEBHOOK_PATH,
            content=body,
            headers={"Plaid-Verification": SigningKey().sign(body)},
        )
    return response.status_code


async def test_a_forgery_flood_spends_bounded_key_fetches_and_genuine_webhooks_pass(
    live_app: LiveApp,
    database: Database,
    emulator: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rate = live_app.settings.plaid_webhook_key_fetch_per_second
    assert rate == 1.0  # the default
    async with (
        PlaidClient.from_settings(live_app.settings) as plaid,
        httpx.AsyncClient(base_url=emulator.url, trust_env=False) as control,
        httpx.AsyncClient(base_url=live_app.url, trust_env=False, timeout=30) as app,
    ):
        created = await plaid.sandbox_public_token_create(institution_id="ins_109508")
        item = await plaid.exchange_public_token(public_token=created.public_token)
        # A first genuine webhook: the app learns the emulator's current key.
        await plaid.sandbox_fire_webhook(
            access_token=item.access_token, webhook_code="DEFAULT_UPDATE"
        )
        fetches_before = await _key_fetches(control)
        gate = asyncio.Semaphore(CONCURRENT)

        async def genuine() -> None:
            for code in GENUINE:
                await plaid.sandbox_fire_webhook(access_token=item.access_token, webhook_code=code)

        with caplog.at_level(logging.WARNING, logger="plaid_bridge"):
            started = time.monotonic()
            forged, _ = await asyncio.gather(
                asyncio.gather(*(_forge(app, gate, n) for n in range(FORGERIES))),
                genuine(),
            )
            elapsed = time.monotonic() - started
        fetched = await _key_fetches(control) - fetches_before
        sent = (await control.get("/emulator/webhooks", params={"itemId": item.item_id})).json()

    bound = 1 + math.floor(elapsed * rate)  # a full bucket of one, then the rate
    assert bound < FORGERIES / 10, f"the flood took {elapsed:.1f} s: too slow to show a bound"
    assert 1 <= fetched <= bound, (fetched, bound)
    assert forged == [401] * FORGERIES
    assert [w["statusCode"] for w in sent["webhooks"]] == [200] * (1 + len(GENUINE))
    async with database.transaction() as session:
        stored = await session.scalar(
            select(func.count()).where(WebhookEvent.item_id == item.item_id)
        )
    assert stored == 1 + len(GENUINE)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    reasons = {r.__dict__.get("reason") for r in caplog.records if r.msg == "webhooks.rejected"}
    assert reasons == {"unknown_key", "key_fetch_throttled"}
