"""The service as browsers call it: an app built from settings of the test's choosing (CORS
origins, the auth cookie, the response envelope are fixed when the app is created)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from plaid_bridge.app import create_app
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.services import build_services
from tests.conftest import Api, make_settings

FRONTEND = "http://localhost:3000"
ELSEWHERE = "https://evil.example"
COOKIE = "access_token"

MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(
    database_url: str, emulator: EmulatorServer, tmp_path: Path
) -> AsyncIterator[MakeApi]:
    """Builds the service with these setting overrides, on the test's database."""
    made: list[Api] = []

    async def build(**overrides: Any) -> Api:
        settings = make_settings(
            database_url=database_url,
            plaid_api_host=emulator.url,
            var_dir=tmp_path / "var",
            **overrides,
        )
        services = build_services(settings)
        app = create_app(services=services)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        api = Api(client, app, services)
        api.extra.append(services)  # closed with the harness
        made.append(api)
        return api

    yield build
    for api in made:
        await api.client.aclose()
        await api.close()


def cookie_header(values: dict[str, str]) -> dict[str, str]:
    """A Cookie header as a browser sends it (httpx's per-request cookies are deprecated)."""
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in values.items())}
