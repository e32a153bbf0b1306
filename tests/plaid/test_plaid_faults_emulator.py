"""Injected faults: each is classified as Plaid means it, retried only where it is safe, and
every call ends within its budget."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from plaid_bridge.plaid import PlaidClient, PlaidError, PlaidErrorClass, TokenExchange

pytestmark = pytest.mark.anyio

CallLog = Callable[..., Awaitable[list[dict[str, Any]]]]
C = PlaidErrorClass


async def inject(control: httpx.AsyncClient, endpoint: str, count: int, **fault: Any) -> None:
    response = await control.post(
        "/emulator/faults", json={"endpoint": endpoint, "count": count, **fault}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("code", "status", "error_type", "error_class", "attempts"),
    [
        ("RATE_LIMIT_EXCEEDED", 429, "RATE_LIMIT_EXCEEDED", C.RATE_LIMITED, 3),
        ("CREDITS_EXHAUSTED", 429, "RATE_LIMIT_EXCEEDED", C.CREDITS_EXHAUSTED, 1),
        ("INSTITUTION_DOWN", 400, "INSTITUTION_ERROR", C.INSTITUTION_TRANSIENT, 1),
        ("INSTITUTION_NOT_RESPONDING", 400, "INSTITUTION_ERROR", C.INSTITUTION_TRANSIENT, 1),
        ("INTERNAL_SERVER_ERROR", 500, "API_ERROR", C.PLAID_TRANSIENT, 3),
        ("PLANNED_MAINTENANCE", 503, "API_ERROR", C.PLAID_TRANSIENT, 3),
        ("ITEM_LOCKED", 400, "ITEM_ERROR", C.USER_ACTION_AT_BANK, 1),
        ("USER_PERMISSION_REVOKED", 400, "ITEM_ERROR", C.REVOKED, 1),
        ("PRODUCT_NOT_READY", 400, "ITEM_ERROR", C.NOT_READY, 1),
    ],
)
async def test_each_fault_is_classified_and_retried_only_when_transient(
    make_client: Callable[..., PlaidClient],
    item: TokenExchange,
    control: httpx.AsyncClient,
    emulator_calls: CallLog,
    code: str,
    status: int,
    error_type: str,
    error_class: PlaidErrorClass,
    attempts: int,
) -> None:
    client = make_client(max_retries=2)
    await inject(control, "/accounts/get", 10, errorCode=code, itemId=item.item_id)
    with pytest.raises(PlaidError) as caught:
        await client.get_accounts(access_token=item.access_token)
    error = caught.value
    assert (error.status, error.error_type, error.error_class) == (status, error_type, error_class)
    assert error.request_id
    assert error.endpoint == "/accounts/get"
    assert len(await emulator_calls("/accounts/get", item.item_id)) == attempts


async def test_rate_limit_codes_name_the_endpoint(
    plaid_client: PlaidClient, item: TokenExchange, control: httpx.AsyncClient
) -> None:
    await inject(control, "/transactions/sync", 10, errorCode="RATE_LIMIT_EXCEEDED")
    with pytest.raises(PlaidError) as caught:
        await plaid_client.sync_transactions(access_token=item.access_token)
    assert caught.value.error_code == "TRANSACTIONS_SYNC_LIMIT"
    assert caught.value.error_class is C.RATE_LIMITED
    assert caught.value.retryable


async def test_a_call_succeeds_after_two_server_errors(
    make_client: Callable[..., PlaidClient],
    item: TokenExchange,
    control: httpx.AsyncClient,
    emulator_calls: CallLog,
) -> None:
    client = make_client(max_retries=3)
    await inject(control, "/item/get", 2, errorCode="INTERNAL_SERVER_ERROR", itemId=item.item_id)
    got = await client.get_item(access_token=item.access_token)
    assert got.item_id == item.item_id
    calls = await emulator_calls("/item/get", item.item_id)
    assert [call["status"] for call in calls] == [500, 500, 200]


async def test_retries_stop_at_max_retries(
    make_client: Callable[..., PlaidClient],
    item: TokenExchange,
    control: httpx.AsyncClient,
    emulator_calls: CallLog,
) -> None:
    client = make_client(max_retries=0)
    await inject(control, "/item/get", 5, errorCode="INTERNAL_SERVER_ERROR", itemId=item.item_id)
    with pytest.raises(PlaidError):
        await client.get_item(access_token=item.access_token)
    assert len(await emulator_calls("/item/get", item.item_id)) == 1


async def test_the_exchange_is_never_retried(
    plaid_client: PlaidClient, control: httpx.AsyncClient, emulator_calls: CallLog
) -> None:
    public = await plaid_client.sandbox_public_token_create(institution_id="ins_109508")
    before = len(await emulator_calls("/item/public_token/exchange"))
    await inject(control, "/item/public_token/exchange", 1, errorCode="INTERNAL_SERVER_ERROR")
    with pytest.raises(PlaidError) as caught:
        await plaid_client.exchange_public_token(public_token=public.public_token)
    assert caught.value.error_class is C.PLAID_TRANSIENT
    assert len(await emulator_calls("/item/public_token/exchange")) == before + 1
    # The failed attempt did not use the token up: the caller may decide to try again.
    exchange = await plaid_client.exchange_public_token(public_token=public.public_token)
    assert exchange.item_id


async def test_the_sandbox_calls_are_never_retried(
    plaid_client: PlaidClient,
    item: TokenExchange,
    control: httpx.AsyncClient,
    emulator_calls: CallLog,
) -> None:
    await inject(control, "/sandbox/item/reset_login", 3, errorCode="INTERNAL_SERVER_ERROR")
    with pytest.raises(PlaidError):
        await plaid_client.sandbox_reset_login(access_token=item.access_token)
    assert len(await emulator_calls("/sandbox/item/reset_login", item.item_id)) == 1


async def test_a_dropped_connection_is_a_transient_network_error(
    make_client: Callable[..., PlaidClient],
    item: TokenExchange,
    control: httpx.AsyncClient,
    emulator_calls: CallLog,
) -> None:
    await inject(control, "/accounts/get", 1, dropConnection=True, itemId=item.item_id)
    with pytest.raises(PlaidError) as caught:
        await make_client(max_retries=0).get_accounts(access_token=item.access_token)
    error = caught.value
    assert (error.error_code, error.error_class, error.status) == (
        "NETWORK_ERROR",
        C.PLAID_TRANSIENT,
        None,
    )
    assert error.retryable
    # With retries, the next attempt gets through.
    await inject(control, "/accounts/get", 1, dropConnection=True, itemId=item.item_id)
    accounts = await make_client(max_retries=2).get_accounts(access_token=item.access_token)
    assert accounts
    statuses = [call["status"] for call in await emulator_calls("/accounts/get", item.item_id)]
    assert statuses == [None, None, 200]


async def test_latency_beyond_the_budget_is_a_timeout_within_the_budget(
    make_client: Callable[..., PlaidClient], item: TokenExchange, control: httpx.AsyncClient
) -> None:
    client = make_client(timeout=0.5, max_retries=3)
    # Four attempts into 60 s each would take minutes: ending within the guard (a failure
    # bound, not a speed check) means the budget covers every attempt together.
    await inject(control, "/accounts/get", 5, latencyMs=60_000, itemId=item.item_id)
    with anyio.fail_after(10), pytest.raises(PlaidError) as caught:
        await client.get_accounts(access_token=item.access_token)
    assert caught.value.error_code == "TIMEOUT"
    assert caught.value.transient
    assert caught.value.error_class is C.PLAID_TRANSIENT


async def test_latency_within_the_budget_is_only_slow(
    make_client: Callable[..., PlaidClient], item: TokenExchange, control: httpx.AsyncClient
) -> None:
    client = make_client(timeout=3.0)
    await inject(control, "/item/get", 1, latencyMs=200, itemId=item.item_id)
    got = await client.get_item(access_token=item.access_token)
    assert got.item_id == item.item_id
