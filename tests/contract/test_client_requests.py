"""The request bodies PlaidClient sends, against the requestBody schema of each path.

plaid-python checks types and bounds but never enum values, so a product or country typo goes
out as is; only Plaid's spec catches it. Every client method runs once against the emulator,
which records each parsed body (`GET /emulator/calls`); each body is then validated. The SDK
sends credentials as headers, so bodies carry no client_id/secret (optional in the schemas).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.plaid import PlaidClient
from tests.contract.emulator_wire import CLIENT_ID, INSTITUTION, SECRET, WEBHOOK, EmulatorWire
from tests.contract.plaid_spec import PlaidSpec

CLIENT_ENDPOINTS = (
    "/link/token/create",
    "/sandbox/public_token/create",
    "/item/public_token/exchange",
    "/item/get",
    "/item/remove",
    "/item/webhook/update",
    "/accounts/get",
    "/accounts/balance/get",
    "/institutions/get_by_id",
    "/transactions/sync",
    "/transactions/refresh",
    "/webhook_verification_key/get",
    "/sandbox/item/fire_webhook",
    "/sandbox/item/reset_login",
)


async def every_method(client: PlaidClient, key_id: str) -> None:
    """Each PlaidClient method at least once, with the optional arguments that change the body."""
    await client.create_link_token(user_id="user-1")
    await client.create_link_token(
        user_id="user-1",
        products=["transactions", "auth"],
        country_codes=["US"],
        language="fr",
        account_filters={"depository": {"account_subtypes": ["checking", "savings"]}},
    )
    public = await client.sandbox_public_token_create(institution_id=INSTITUTION)
    item = await client.exchange_public_token(public_token=public.public_token)
    token = item.access_token
    await client.create_link_token(
        user_id="user-1", access_token=token, account_selection_enabled=True
    )
    await client.get_item(access_token=token)
    accounts = await client.get_accounts(access_token=token)
    await client.get_balances(access_token=token)
    await client.get_balances(access_token=token, account_ids=[accounts[0].account_id])
    await client.get_institution(institution_id=INSTITUTION)
    await client.get_institution(institution_id=INSTITUTION, country_codes=["US"])
    page = await client.sync_transactions(access_token=token)  # NOT_READY
    page = await client.sync_transactions(access_token=token, count=500)
    await client.sync_transactions(access_token=token, cursor=page.next_cursor, count=500)
    await client.refresh_transactions(access_token=token)
    await client.update_item_webhook(access_token=token, webhook=WEBHOOK + "/v2")
    await client.get_webhook_verification_key(key_id=key_id)
    await client.sandbox_fire_webhook(access_token=token, webhook_code="NEW_ACCOUNTS_AVAILABLE")
    await client.sandbox_fire_webhook(
        access_token=token, webhook_code="DEFAULT_UPDATE", webhook_type="TRANSACTIONS"
    )
    await client.sandbox_reset_login(access_token=token)
    await client.remove_item(access_token=token)


@pytest.fixture(scope="module")
def client_calls(emulator: EmulatorServer, plaid_spec: PlaidSpec) -> Iterator[list[dict[str, Any]]]:
    """Runs every client method once on a reset emulator; yields the calls it recorded."""
    wire = EmulatorWire(emulator.url, plaid_spec)
    wire.control("POST", "/emulator/reset")
    key_id = wire.control("POST", "/emulator/webhook-keys/rotate")["keyId"]
    client = PlaidClient(
        host=emulator.url,
        client_id=CLIENT_ID,
        secret=SECRET,
        backoff=0.01,
        webhook=WEBHOOK,
        redirect_uri="https://localhost/oauth/return",
    )
    try:
        anyio.run(every_method, client, key_id)
        yield wire.calls()
    finally:
        client.close()
        wire.close()


def test_only_known_endpoints_were_called(client_calls: list[dict[str, Any]]) -> None:
    assert {call["endpoint"] for call in client_calls} == set(CLIENT_ENDPOINTS)
    assert all(call["status"] == 200 for call in client_calls), client_calls


@pytest.mark.parametrize("endpoint", CLIENT_ENDPOINTS)
def test_client_request_body(
    client_calls: list[dict[str, Any]], plaid_spec: PlaidSpec, endpoint: str
) -> None:
    bodies = [call["request"] for call in client_calls if call["endpoint"] == endpoint]
    assert bodies, f"PlaidClient never called {endpoint}"
    problems = [
        f"{endpoint} {body}: {line}"
        for body in bodies
        for line in plaid_spec.request_errors(endpoint, body)
    ]
    assert not problems, "\n".join(["PlaidClient sent bodies Plaid's spec refuses:", *problems])
