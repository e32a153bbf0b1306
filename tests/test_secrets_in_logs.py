"""No token, secret or key reaches the logs, through a full flow with failures on the way."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.logs import configure_logging
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything logged, at DEBUG, through the service's own logging setup."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", "json", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


async def test_full_flow_logs_no_secret(
    api: Api, emulator_control: httpx.AsyncClient, log_output: io.StringIO
) -> None:
    headers = api.auth()
    link = await api.client.post(f"{BASE}/create-link-token", json={}, headers=headers)
    public_token = await api.public_token()
    exchange = await api.client.post(
        f"{BASE}/exchange-token", json={"publicToken": public_token}, headers=headers
    )
    item_id = exchange.json()["itemId"]
    async with api.services.database.transaction() as session:
        row = (await session.scalars(select(PlaidConnection))).one()
    access_token = api.services.cipher.decrypt(row.access_token_encrypted or "", item_id)

    for code in ("INTERNAL_SERVER_ERROR", "INSTITUTION_DOWN", "RATE_LIMIT_EXCEEDED"):
        await emulator_control.post(
            "/emulator/faults", json={"endpoint": "/accounts/get", "errorCode": code, "count": 5}
        )
        await api.client.get(f"{BASE}/accounts/{item_id}?refresh=true", headers=headers)
        await emulator_control.delete("/emulator/faults")
    await emulator_control.post(
        "/emulator/faults", json={"endpoint": "/item/get", "dropConnection": True, "count": 5}
    )
    await api.client.post(
        f"{BASE}/exchange-token", json={"publicToken": await api.public_token()}, headers=headers
    )
    await emulator_control.delete("/emulator/faults")
    await api.client.get(f"{BASE}/accounts/{item_id}?refresh=balance", headers=headers)
    # An unexpected failure whose exception text carries the access token.
    async with api.services.database.transaction() as session:
        stored = await session.get(PlaidConnection, row.id)
        assert stored is not None
        stored.access_token_encrypted = access_token
    await api.client.get(f"{BASE}/accounts/{item_id}?refresh=true", headers=headers)
    logger = logging.getLogger("plaid_bridge.test")
    logger.error("failed with %s", access_token)
    try:
        raise RuntimeError(f"Plaid refused {access_token} and {public_token}")
    except RuntimeError:
        logger.exception("wrapped failure", extra={"access_token": access_token})
    await api.client.delete(f"{BASE}/connections/{item_id}", headers=headers)

    output = log_output.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    # Plaid calls made by requests (the test's own sandbox calls to make public tokens are not).
    plaid_calls = [
        line
        for line in lines
        if line.get("event") == "plaid.call" and not line["endpoint"].startswith("/sandbox/")
    ]
    assert plaid_calls
    missing = [line for line in plaid_calls if not (line.get("request_id") and line.get("org_id"))]
    assert missing == []
    assert any(line.get("item_id") == item_id for line in plaid_calls)
    answered = [line for line in plaid_calls if line["outcome"] == "ok"]
    assert answered
    assert all(line.get("plaid_request_id") for line in answered)
    assert link.status_code == 201
    assert "plaid.exchange.stored" in output
    assert "request.unexpected_error" in output
    secrets = {
        "access token": access_token,
        "public token": public_token,
        "client secret": api.services.settings.plaid_credentials[1].get_secret_value(),
        "encryption key": ENCRYPTION_KEYS.split(":", 1)[1],
        "jwt secret": JWT_SECRET,
        "bearer token": headers["Authorization"].split()[1],
    }
    for name, value in secrets.items():
        assert value not in output, f"{name} leaked into the logs"
