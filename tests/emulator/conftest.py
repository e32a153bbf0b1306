"""Emulator fixtures: servers shared per session (one per config), reset before every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
from tests.emulator.plaid_http import PlaidHTTP
from tests.emulator.receiver import WebhookReceiver


class EmulatorPool:
    """Started emulators by config; starting one costs more than resetting it."""

    def __init__(self) -> None:
        self._servers: dict[EmulatorConfig, EmulatorServer] = {}

    def get(self, config: EmulatorConfig) -> EmulatorServer:
        """A running emulator for `config`, in its initial state (no Items, faults, calls)."""
        server = self._servers.get(config)
        if server is None:
            server = self._servers[config] = EmulatorServer(config).start()
        else:
            httpx.post(f"{server.url}/emulator/reset", trust_env=False).raise_for_status()
        return server

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()


@pytest.fixture(scope="session")
def emulator_pool() -> Iterator[EmulatorPool]:
    pool = EmulatorPool()
    yield pool
    pool.close()


@pytest.fixture
def emulator(emulator_pool: EmulatorPool) -> EmulatorServer:
    """The default emulator (300 transactions per Item, one NOT_READY sync), freshly reset."""
    return emulator_pool.get(EmulatorConfig())


@pytest.fixture
def plaid(emulator: EmulatorServer) -> Iterator[PlaidHTTP]:
    client = PlaidHTTP(emulator.url)
    yield client
    client.close()


PlaidFor = Callable[[EmulatorConfig], PlaidHTTP]


@pytest.fixture
def plaid_for(emulator_pool: EmulatorPool) -> Iterator[PlaidFor]:
    """HTTP access to a (reset) emulator with a specific config."""
    clients: list[PlaidHTTP] = []

    def make(config: EmulatorConfig) -> PlaidHTTP:
        client = PlaidHTTP(emulator_pool.get(config).url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running
