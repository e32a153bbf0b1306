"""Fixtures for the Plaid client tests: emulators over real HTTP, clients built for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
from plaid_bridge.plaid import PlaidClient, TokenExchange

INSTITUTION = "ins_109508"
CLIENT_ID = "emulator-client-id"
SECRET = "emulator-secret"

ClientFactory = Callable[..., PlaidClient]
CallLog = Callable[..., Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    """One emulator per test module, with a small history per Item."""
    with EmulatorServer(EmulatorConfig(seed=11, transactions=60), port=0) as server:
        yield server


@pytest.fixture
async def control(emulator: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """The emulator's control endpoints; faults are cleared before and after each test."""
    async with httpx.AsyncClient(base_url=emulator.url, timeout=10.0) as client:
        (await client.delete("/emulator/faults")).raise_for_status()
        yield client
        (await client.delete("/emulator/faults")).raise_for_status()


@pytest.fixture
def make_client(emulator: EmulatorServer) -> Iterator[ClientFactory]:
    """Clients of the emulator with a short backoff (and no webhook URL), closed afterwards."""
    clients: list[PlaidClient] = []

    def make(*, timeout: float = 10.0, max_retries: int = 3, backoff: float = 0.01) -> PlaidClient:
        client = PlaidClient(
            host=emulator.url,
            client_id=CLIENT_ID,
            secret=SECRET,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def plaid_client(make_client: ClientFactory) -> PlaidClient:
    return make_client()


@pytest.fixture
async def item(plaid_client: PlaidClient) -> TokenExchange:
    """A fresh exchanged Item at the default institution."""
    public = await plaid_client.sandbox_public_token_create(institution_id=INSTITUTION)
    return await plaid_client.exchange_public_token(public_token=public.public_token)


@pytest.fixture
def emulator_calls(control: httpx.AsyncClient) -> CallLog:
    """Reads the calls the emulator received at an endpoint (for one Item, if given)."""

    async def read(endpoint: str, item_id: str | None = None) -> list[dict[str, Any]]:
        response = await control.get("/emulator/calls", params={"endpoint": endpoint})
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["calls"]
        return [call for call in found if item_id is None or call.get("itemId") == item_id]

    return read
