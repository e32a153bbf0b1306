"""Each PlaidClient method against the emulator over real HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import json
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import anyio.to_thread
import pytest

from plaid_bridge.config import load_settings
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.plaid import PlaidClient, PlaidError, PlaidErrorClass, TokenExchange

pytestmark = pytest.mark.anyio

CallLog = Callable[..., Awaitable[list[dict[str, Any]]]]
INSTITUTION = "ins_109508"


@dataclass
class WebhookSink:
    url: str = ""
    received: queue.Queue[tuple[dict[str, str], bytes]] = field(default_factory=queue.Queue)


async def test_a_client_built_from_settings_reaches_the_emulator(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PLAID_CLIENT_ID", "PLAID_SECRET", "PLAID_ENV", "PLAID_PRODUCTS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(plaid_api_host=emulator.url, plaid_timeout_seconds=5, _env_file=None)
    async with PlaidClient.from_settings(settings) as client:
        assert repr(client) == f"PlaidClient(host={emulator.url!r})"
        institution = await client.get_institution(institution_id=INSTITUTION)
    assert institution.institution_id == INSTITUTION
    assert institution.name


async def test_link_token_for_a_new_item_carries_the_configured_defaults(
    make_client: Callable[..., PlaidClient], emulator_calls: CallLog
) -> None:
    client = make_client()
    before = dt.datetime.now(dt.UTC)
    token = await client.create_link_token(user_id="user-1")
    assert token.link_token.startswith("link-")
    assert token.expiration > before
    assert token.request_id
    [call] = [
        c for c in await emulator_calls("/link/token/create") if c["requestId"] == token.request_id
    ]
    request = call["request"]
    assert request["products"] == ["transactions"]
    assert request["country_codes"] == ["US", "CA"]
    assert request["transactions"] == {"days_requested": 730}
    assert request["user"] == {"client_user_id": "user-1"}


async def test_link_token_in_update_mode_sends_no_products(
    plaid_client: PlaidClient, item: TokenExchange, emulator_calls: CallLog
) -> None:
    token = await plaid_client.create_link_token(
        user_id="user-1", access_token=item.access_token, account_selection_enabled=True
    )
    assert token.link_token.startswith("link-")
    [call] = [
        c for c in await emulator_calls("/link/token/create") if c["requestId"] == token.request_id
    ]
    assert "products" not in call["request"]
    assert call["request"]["update"] == {"account_selection_enabled": True}
    with pytest.raises(ValueError, match="update mode"):
        await plaid_client.create_link_token(
            user_id="user-1", access_token=item.access_token, products=["transactions"]
        )


async def test_link_token_with_account_filters(plaid_client: PlaidClient) -> None:
    token = await plaid_client.create_link_token(
        user_id="user-2",
        account_filters={"depository": {"account_subtypes": ["checking", "savings"]}},
        country_codes=["US"],
        language="fr",
    )
    assert token.link_token.startswith("link-")


async def test_sandbox_public_token_then_exchange(plaid_client: PlaidClient) -> None:
    public = await plaid_client.sandbox_public_token_create(
        institution_id=INSTITUTION, products=["transactions"]
    )
    assert public.public_token.startswith("public-")
    exchange = await plaid_client.exchange_public_token(public_token=public.public_token)
    assert exchange.access_token.startswith("access-")
    assert exchange.item_id
    assert exchange.access_token not in repr(exchange)
    with pytest.raises(PlaidError) as caught:
        await plaid_client.exchange_public_token(public_token=public.public_token)
    assert caught.value.error_code == "INVALID_PUBLIC_TOKEN"
    assert caught.value.error_class is PlaidErrorClass.OURS_TO_FIX
    assert public.public_token not in str(caught.value)


async def test_accounts_and_real_time_balances(
    plaid_client: PlaidClient, item: TokenExchange
) -> None:
    accounts = await plaid_client.get_accounts(access_token=item.access_token)
    assert accounts
    for account in accounts:
        assert account.raw["account_id"] == account.account_id
        assert isinstance(account.balances.current, Decimal)
        assert isinstance(account.raw["balances"]["current"], Decimal | int)
    first = accounts[0].account_id
    balances = await plaid_client.get_balances(access_token=item.access_token, account_ids=[first])
    assert [account.account_id for account in balances] == [first]
    everything = await plaid_client.get_balances(access_token=item.access_token)
    assert {a.account_id for a in everything} == {a.account_id for a in accounts}


async def test_item_get_update_webhook_and_remove(
    plaid_client: PlaidClient, item: TokenExchange, emulator: EmulatorServer
) -> None:
    got = await plaid_client.get_item(access_token=item.access_token)
    assert (got.item_id, got.institution_id, got.error) == (item.item_id, INSTITUTION, None)
    assert "transactions" in got.billed_products
    assert got.last_successful_update is not None

    hook = f"{emulator.url}/test-webhook-sink"
    updated = await plaid_client.update_item_webhook(access_token=item.access_token, webhook=hook)
    assert (updated.item_id, updated.webhook) == (item.item_id, hook)

    assert await plaid_client.remove_item(access_token=item.access_token)
    with pytest.raises(PlaidError) as caught:
        await plaid_client.get_item(access_token=item.access_token)
    assert caught.value.error_class is PlaidErrorClass.GONE


async def test_institution(plaid_client: PlaidClient) -> None:
    institution = await plaid_client.get_institution(
        institution_id=INSTITUTION, country_codes=["US"]
    )
    assert institution.institution_id == INSTITUTION
    assert "US" in institution.country_codes


async def test_reset_login_makes_the_item_need_the_user(
    plaid_client: PlaidClient, item: TokenExchange
) -> None:
    assert await plaid_client.sandbox_reset_login(access_token=item.access_token)
    got = await plaid_client.get_item(access_token=item.access_token)
    assert got.error is not None
    assert got.error.error_code == "ITEM_LOGIN_REQUIRED"
    assert got.error.error_class is PlaidErrorClass.NEEDS_USER
    with pytest.raises(PlaidError) as caught:
        await plaid_client.get_accounts(access_token=item.access_token)
    error = caught.value
    assert (error.status, error.error_type, error.error_code) == (
        400,
        "ITEM_ERROR",
        "ITEM_LOGIN_REQUIRED",
    )
    assert error.error_class is PlaidErrorClass.NEEDS_USER
    assert error.needs_reauth
    assert not error.retryable
    assert item.access_token not in str(error)


async def test_refresh_and_fire_webhook(plaid_client: PlaidClient, item: TokenExchange) -> None:
    assert await plaid_client.refresh_transactions(access_token=item.access_token)
    assert await plaid_client.sandbox_fire_webhook(
        access_token=item.access_token,
        webhook_code="SYNC_UPDATES_AVAILABLE",
        webhook_type="TRANSACTIONS",
    )


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    """An HTTP server on 127.0.0.1 that records the webhooks posted to it."""
    sink = WebhookSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sink.received.put((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_webhook_verification_key_of_a_delivered_webhook(
    plaid_client: PlaidClient, item: TokenExchange, webhook_sink: WebhookSink
) -> None:
    await plaid_client.update_item_webhook(access_token=item.access_token, webhook=webhook_sink.url)
    await plaid_client.sandbox_fire_webhook(
        access_token=item.access_token,
        webhook_code="SYNC_UPDATES_AVAILABLE",
        webhook_type="TRANSACTIONS",
    )
    headers, body = await anyio.to_thread.run_sync(webhook_sink.received.get, True, 5.0)
    assert json.loads(body)["item_id"] == item.item_id
    jwt_header = headers["Plaid-Verification"].split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(jwt_header + "=" * (-len(jwt_header) % 4)))["kid"]

    key = await plaid_client.get_webhook_verification_key(key_id=kid)
    assert (key.kid, key.alg, key.crv, key.kty, key.use) == (kid, "ES256", "P-256", "EC", "sig")
    assert key.expired_at is None
    assert key.created_at > 0
    assert set(key.jwk) == {"kid", "alg", "crv", "kty", "use", "x", "y"}

    with pytest.raises(PlaidError) as caught:
        await plaid_client.get_webhook_verification_key(key_id="no-such-key")
    assert caught.value.error_class is PlaidErrorClass.OURS_TO_FIX


async def test_concurrent_calls_run_off_the_event_loop(
    plaid_client: PlaidClient, item: TokenExchange
) -> None:
    results: list[str] = []

    async def one() -> None:
        results.append((await plaid_client.get_item(access_token=item.access_token)).item_id)

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(one)
    assert results == [item.item_id] * 20
