"""API_RESPONSE_ENVELOPE=operate: success bodies as Operate's API wraps them, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from plaid_bridge.browser.envelope import operate_body
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.sync.engine import Outcome, sync_item
from tests.browser_calls.conftest import MakeApi
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


class OperateClient:
    """Reads every success body as Operate's web client does: `response.data.data`."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.api.client.request(
            method, f"{BASE}{path}", headers=self.api.auth(role="MEMBER"), **kwargs
        )
        assert response.is_success, response.text
        body = response.json()
        assert set(body) == {"data", "meta"}
        assert body["meta"]["requestId"] == response.headers["x-request-id"]
        stamp = datetime.fromisoformat(body["meta"]["timestamp"])
        assert body["meta"]["timestamp"].endswith("Z")
        assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)
        return body["data"]


async def _public_token(emulator: EmulatorServer) -> str:
    """As a script gets one: the emulator's /sandbox/public_token/create, over HTTP."""
    async with httpx.AsyncClient(base_url=emulator.url, timeout=15) as plaid:
        response = await plaid.post(
            "/sandbox/public_token/create",
            json={
                "client_id": "emulator-client-id",
                "secret": "emulator-secret",
                "institution_id": "ins_109508",
                "initial_products": ["transactions"],
            },
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["public_token"]
    return token


async def test_an_operate_client_links_exchanges_and_reads_transactions(
    make_api: MakeApi, emulator: EmulatorServer
) -> None:
    api = await make_api(api_response_envelope="operate")
    operate = OperateClient(api)

    link = await operate.call("POST", "/create-link-token", json={})
    assert link["linkToken"].startswith("link-")

    exchanged = await operate.call(
        "POST", "/exchange-token", json={"publicToken": await _public_token(emulator)}
    )
    item_id = exchanged["itemId"]
    assert exchanged["status"] == "ACTIVE"
    assert exchanged["accounts"]

    assert (await operate.call("POST", f"/connections/{item_id}/sync")) == {"syncRequested": True}
    outcomes = [(await sync_item(api.services, item_id, trigger="test")).outcome for _ in range(3)]
    assert Outcome.SUCCESS in outcomes

    feed = await operate.call("GET", f"/transactions/{item_id}/sync", params={"count": 500})
    assert feed["transactions"]
    assert {"transaction_id", "account_id", "amount"} <= set(feed["transactions"][0])
    listed = await operate.call("GET", "/transactions", params={"itemId": item_id})
    assert {t["transaction_id"] for t in listed["transactions"]} <= {
        t["transaction_id"] for t in feed["transactions"]
    }
    connections = await operate.call("GET", "/connections")
    assert [row["itemId"] for row in connections] == [item_id]


async def test_errors_the_webhook_and_ops_endpoints_are_not_wrapped(make_api: MakeApi) -> None:
    api = await make_api(api_response_envelope="operate", plaid_webhook_verify=False)
    refused = await api.client.get(f"{BASE}/connections")
    assert refused.status_code == 401
    assert set(refused.json()) == {"error", "requestId"}
    missing = await api.client.get(f"{BASE}/accounts/item-unknown", headers=api.auth())
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "requestId"}
    webhook = await api.client.post(
        f"{BASE}/webhook",
        content=b'{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED"}',
    )
    assert webhook.json() == {"received": True}
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}


async def test_plain_is_the_default(api: Api) -> None:
    response = await api.client.get(f"{BASE}/connections", headers=api.auth())
    assert response.json() == []


def test_the_timestamp_is_written_as_javascript_writes_it() -> None:
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert operate_body([1], request_id="r1", now=moment) == {
        "data": [1],
        "meta": {"timestamp": "2024-05-06T07:08:09.123Z", "requestId": "r1"},
    }
