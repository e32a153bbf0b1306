"""Control endpoints: reset, Item listing, balances that move, the call log's filters, reset
login by Item id, and CORS for pages on loopback."""

from __future__ import annotations

import json
from typing import Any

from tests.emulator.plaid_http import PlaidHTTP
from tests.emulator.receiver import WebhookReceiver


def test_reset_forgets_items_calls_and_faults(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    plaid.control("POST", "/emulator/faults", json={"endpoint": "/item/get", "latencyMs": 1})
    assert plaid.control("POST", "/emulator/reset") == {"reset": True}
    assert plaid.control("GET", "/emulator/items") == {"items": []}
    assert plaid.control("GET", "/emulator/calls") == {"count": 0, "calls": []}
    assert plaid.control("GET", "/emulator/faults") == {"faults": []}
    gone = plaid.post("/item/get", {"access_token": item.access_token})
    assert gone.json()["error_code"] == "INVALID_ACCESS_TOKEN"


def test_items_listing(plaid: PlaidHTTP) -> None:
    item = plaid.link_item("ins_109512")
    plaid.ok("/sandbox/item/reset_login", {"access_token": item.access_token})
    [listed] = plaid.control("GET", "/emulator/items")["items"]
    assert listed["itemId"] == item.item_id
    assert listed["accessToken"] == item.access_token
    assert listed["institutionId"] == "ins_109512"
    assert listed["errorCode"] == "ITEM_LOGIN_REQUIRED"
    assert listed["transactions"] == 300


def test_balances_move_a_little_on_each_real_time_call(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    cached = plaid.ok("/accounts/get", {"access_token": item.access_token})["accounts"]
    live = plaid.ok("/accounts/balance/get", {"access_token": item.access_token})["accounts"]
    for before, after in zip(cached, live, strict=True):
        assert before["account_id"] == after["account_id"]
        assert abs(after["balances"]["current"] - before["balances"]["current"]) <= 25
        assert after["balances"]["last_updated_datetime"] is not None
    one = live[0]["account_id"]
    only = plaid.ok(
        "/accounts/balance/get",
        {"access_token": item.access_token, "options": {"account_ids": [one]}},
    )["accounts"]
    assert [a["account_id"] for a in only] == [one]
    unknown = plaid.post(
        "/accounts/balance/get",
        {"access_token": item.access_token, "options": {"account_ids": ["nope"]}},
    )
    assert unknown.json()["error_code"] == "INVALID_ACCOUNT_ID"


def test_calls_filter_by_endpoint_and_item(plaid: PlaidHTTP) -> None:
    one, other = plaid.link_item(), plaid.link_item()
    for item in (one, other, one):
        plaid.ok("/item/get", {"access_token": item.access_token})
    by_item = plaid.control(
        "GET", "/emulator/calls", params={"endpoint": "/item/get", "item_id": one.item_id}
    )
    assert by_item["count"] == 2
    assert {call["itemId"] for call in by_item["calls"]} == {one.item_id}


def _last_delivery(receiver: WebhookReceiver) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(receiver.deliveries[-1].body)
    return body


def test_reset_login_and_fire_webhook_by_item_id(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item(webhook=receiver.url)

    reset = plaid.control("POST", f"/emulator/items/{item.item_id}/reset-login")
    assert reset == {
        "itemId": item.item_id,
        "resetLogin": True,
        "errorCode": "ITEM_LOGIN_REQUIRED",
    }
    body = _last_delivery(receiver)
    assert (body["webhook_type"], body["webhook_code"]) == ("ITEM", "ERROR")
    assert body["error"]["error_code"] == "ITEM_LOGIN_REQUIRED"
    refused = plaid.post("/accounts/get", {"access_token": item.access_token})
    assert refused.json()["error_code"] == "ITEM_LOGIN_REQUIRED"

    fired = plaid.control(
        "POST",
        f"/emulator/items/{item.item_id}/fire-webhook",
        json={"webhookCode": "LOGIN_REPAIRED", "webhookType": "ITEM"},
    )
    assert fired == {"itemId": item.item_id, "webhookFired": True}
    assert _last_delivery(receiver)["webhook_code"] == "LOGIN_REPAIRED"
    plaid.ok("/accounts/get", {"access_token": item.access_token})


def test_reset_login_and_fire_webhook_refuse_unknown_items_and_codes(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    for path in ("/emulator/items/nope/reset-login", "/emulator/items/nope/fire-webhook"):
        response = plaid.client.post(path, json={"webhookCode": "ERROR"})
        assert response.status_code == 404, response.text
        assert response.json()["error_code"] == "ITEM_NOT_FOUND"
    fire = f"/emulator/items/{item.item_id}/fire-webhook"
    for body, field in (
        ({"webhookCode": "NOT_A_CODE"}, "webhook_code"),
        ({"webhookCode": "ERROR", "webhookType": "TRANSACTIONS"}, "webhook_type"),
        ({}, "webhookCode"),
    ):
        response = plaid.client.post(fire, json=body)
        assert response.status_code == 400, response.text
        assert field in response.json()["error_message"], response.text
    plaid.ok("/item/remove", {"access_token": item.access_token})
    gone = plaid.client.post(f"/emulator/items/{item.item_id}/reset-login")
    assert gone.json()["error_code"] == "ITEM_NOT_FOUND"


def test_control_routes_answer_browsers_on_loopback_only(plaid: PlaidHTTP) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    for origin in ("http://127.0.0.1:8000", "http://localhost:3000", "http://[::1]:8000"):
        allowed = plaid.client.options(
            "/emulator/items/x/reset-login", headers={"Origin": origin, **preflight}
        )
        assert allowed.status_code == 200, origin
        assert allowed.headers["access-control-allow-origin"] == origin
        listed = plaid.client.get("/emulator/items", headers={"Origin": origin})
        assert listed.headers["access-control-allow-origin"] == origin
    for origin in ("https://example.com", "http://127.0.0.1.example.com:8000"):
        refused = plaid.client.options(
            "/emulator/items/x/reset-login", headers={"Origin": origin, **preflight}
        )
        assert refused.status_code == 400, origin
        assert "access-control-allow-origin" not in refused.headers
    # Plaid's API itself is not for browsers, as Plaid's is not.
    api = plaid.client.post("/item/get", json={}, headers={"Origin": "http://127.0.0.1:8000"})
    assert "access-control-allow-origin" not in api.headers
