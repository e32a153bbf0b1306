"""PlaidClient with its limiter, against the emulator over real HTTP: Plaid's limits kept on
our side, Plaid's own 429 backed off and retried, CREDITS_EXHAUSTED not."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest

from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.ops.metrics import Metrics
from plaid_bridge.plaid import PlaidClient, PlaidError, PlaidErrorClass
from plaid_bridge.plaid.limits import PRODUCTION_LIMITS
from plaid_bridge.plaid.outbound import LimiterUnavailable, LimitReached, OutboundLimiter
from plaid_bridge.ratelimit.windows import MemoryWindows, RedisWindows, SlidingWindows

pytestmark = pytest.mark.anyio
INSTITUTION = "ins_109508"
BALANCE = "/accounts/balance/get"

ClientFactory = Callable[..., PlaidClient]


@pytest.fixture
async def make_client(emulator: EmulatorServer) -> AsyncIterator[ClientFactory]:
    """Clients of the emulator, each with a limiter on Plaid's production figures over the
    given windows, closed (limiter storage included) afterwards."""
    clients: list[PlaidClient] = []

    def make(
        windows: SlidingWindows | None = None,
        *,
        max_wait: float = 0,
        metrics: Metrics | None = None,
    ) -> PlaidClient:
        limiter = OutboundLimiter(
            windows or MemoryWindows(), PRODUCTION_LIMITS, max_wait=max_wait, events=metrics
        )
        client = PlaidClient(
            host=emulator.url,
            client_id="emulator-client-id",
            secret="emulator-secret",
            timeout=10,
            max_retries=3,
            backoff=0.01,
            limiter=limiter,
            on_call=metrics.plaid_call if metrics is not None else None,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def new_item(client: PlaidClient) -> tuple[str, str]:
    public = await client.sandbox_public_token_create(institution_id=INSTITUTION)
    exchanged = await client.exchange_public_token(public_token=public.public_token)
    return exchanged.item_id, exchanged.access_token


@pytest.fixture
def calls_at(emulator_control: httpx.AsyncClient) -> Callable[[str, str], Awaitable[int]]:
    async def count(endpoint: str, item_id: str) -> int:
        response = await emulator_control.get(
            "/emulator/calls", params={"endpoint": endpoint, "item_id": item_id}
        )
        response.raise_for_status()
        found: int = response.json()["count"]
        return found

    return count


async def burst(clients: list[PlaidClient], token: str, calls: int) -> list[Any]:
    """`calls` concurrent balance requests for one Item, spread over `clients`."""
    outcomes: list[Any] = [None] * calls

    async def one(index: int) -> None:
        client = clients[index % len(clients)]
        try:
            outcomes[index] = await client.get_balances(access_token=token)
        except PlaidError as error:
            outcomes[index] = error

    async with anyio.create_task_group() as group:
        for index in range(calls):
            group.start_soon(one, index)
    return outcomes


async def test_twenty_balance_calls_let_five_reach_plaid(
    make_client: ClientFactory, calls_at: Callable[[str, str], Awaitable[int]]
) -> None:
    metrics = Metrics()
    client = make_client(metrics=metrics)
    item_id, token = await new_item(client)
    outcomes = await burst([client], token, 20)
    refused = [o for o in outcomes if isinstance(o, LimitReached)]
    assert len(refused) == 15
    assert all(56 <= error.retry_after <= 60 and error.scope == "item" for error in refused)
    assert await calls_at(BALANCE, item_id) == 5
    rejections = metrics.registry.get_sample_value(
        "plaid_bridge_plaid_limiter_rejections_total", {"endpoint": BALANCE, "scope": "item"}
    )
    assert rejections == 15
    # Another Item has windows of its own.
    _, other = await new_item(client)
    await client.get_balances(access_token=other)


async def test_two_instances_sharing_redis_share_the_window(
    make_client: ClientFactory, calls_at: Callable[[str, str], Awaitable[int]], redis_url: str
) -> None:
    first = make_client(RedisWindows(redis_url))
    second = make_client(RedisWindows(redis_url))
    item_id, token = await new_item(first)
    outcomes = await burst([first, second], token, 20)
    refused = [o for o in outcomes if isinstance(o, LimitReached)]
    assert await calls_at(BALANCE, item_id) <= 5
    assert len(refused) >= 15
    assert all(1 <= error.retry_after <= 60 for error in refused)
    assert not [o for o in outcomes if isinstance(o, PlaidError) and o not in refused]


async def test_calls_wait_for_a_slot_when_the_bound_allows(emulator: EmulatorServer) -> None:
    metrics = Metrics()
    limiter = OutboundLimiter(
        MemoryWindows(),
        {BALANCE: PRODUCTION_LIMITS[BALANCE]},
        window_seconds=1,
        max_wait=3,
        events=metrics,
    )
    client = PlaidClient(
        host=emulator.url,
        client_id="emulator-client-id",
        secret="emulator-secret",
        limiter=limiter,
    )
    try:
        _, token = await new_item(client)
        outcomes = await burst([client], token, 7)
    finally:
        await client.aclose()
    assert not [o for o in outcomes if isinstance(o, Exception)]
    waits = metrics.registry.get_sample_value(
        "plaid_bridge_plaid_limiter_waits_total", {"endpoint": BALANCE, "scope": "item"}
    )
    assert waits == 2


async def test_plaids_429_is_backed_off_and_retried(
    make_client: ClientFactory,
    emulator_control: httpx.AsyncClient,
    calls_at: Callable[[str, str], Awaitable[int]],
) -> None:
    metrics = Metrics()
    client = make_client(metrics=metrics)
    item_id, token = await new_item(client)
    fault = {"endpoint": "/accounts/get", "errorCode": "RATE_LIMIT_EXCEEDED", "count": 2}
    (await emulator_control.post("/emulator/faults", json=fault)).raise_for_status()
    accounts = await client.get_accounts(access_token=token)
    assert accounts
    assert await calls_at("/accounts/get", item_id) == 3
    retried = metrics.registry.get_sample_value(
        "plaid_bridge_plaid_calls_total",
        {"endpoint": "/accounts/get", "outcome": "retry", "error_code": "ACCOUNTS_LIMIT"},
    )
    assert retried == 2


async def test_credits_exhausted_is_not_retried(
    make_client: ClientFactory,
    emulator_control: httpx.AsyncClient,
    calls_at: Callable[[str, str], Awaitable[int]],
) -> None:
    client = make_client()
    item_id, token = await new_item(client)
    fault = {"endpoint": "/accounts/get", "errorCode": "CREDITS_EXHAUSTED", "count": 3}
    (await emulator_control.post("/emulator/faults", json=fault)).raise_for_status()
    with pytest.raises(PlaidError) as failed:
        await client.get_accounts(access_token=token)
    assert failed.value.error_class is PlaidErrorClass.CREDITS_EXHAUSTED
    assert await calls_at("/accounts/get", item_id) == 1


async def test_unreachable_redis_sends_nothing_to_plaid(
    make_client: ClientFactory, calls_at: Callable[[str, str], Awaitable[int]]
) -> None:
    plain = make_client()
    item_id, token = await new_item(plain)
    client = make_client(RedisWindows("redis://127.0.0.1:9/0", timeout=0.5))
    with anyio.fail_after(5):
        for _ in range(3):
            with pytest.raises(LimiterUnavailable):
                await client.get_item(access_token=token)
    assert await calls_at("/item/get", item_id) == 0
