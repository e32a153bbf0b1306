"""Webhook bodies the emulator sent, against the spec's webhook schemas (components/schemas).

The spec is OpenAPI 3.0, so its webhooks are plain component schemas named per code; the
bodies are read back from `GET /emulator/webhooks?wait=true` exactly as they were sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from plaid_bridge.emulator.plaid_api import WEBHOOK_TYPES
from tests.contract.emulator_wire import EmulatorWire, Item
from tests.contract.plaid_spec import PlaidSpec

# (webhook_type, webhook_code) -> the spec's schema for that body.
WEBHOOK_SCHEMAS: dict[tuple[str, str], str] = {
    ("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE"): "SyncUpdatesAvailableWebhook",
    ("TRANSACTIONS", "DEFAULT_UPDATE"): "DefaultUpdateWebhook",
    ("TRANSACTIONS", "INITIAL_UPDATE"): "InitialUpdateWebhook",
    ("TRANSACTIONS", "HISTORICAL_UPDATE"): "HistoricalUpdateWebhook",
    ("TRANSACTIONS", "TRANSACTIONS_REMOVED"): "TransactionsRemovedWebhook",
    ("ITEM", "ERROR"): "ItemErrorWebhook",
    ("ITEM", "LOGIN_REPAIRED"): "ItemLoginRepairedWebhook",
    ("ITEM", "NEW_ACCOUNTS_AVAILABLE"): "NewAccountsAvailableWebhook",
    ("ITEM", "PENDING_EXPIRATION"): "PendingExpirationWebhook",
    ("ITEM", "PENDING_DISCONNECT"): "PendingDisconnectWebhook",
    ("ITEM", "USER_PERMISSION_REVOKED"): "UserPermissionRevokedWebhook",
    ("ITEM", "USER_ACCOUNT_REVOKED"): "UserAccountRevokedWebhook",
    ("ITEM", "WEBHOOK_UPDATE_ACKNOWLEDGED"): "WebhookUpdateAcknowledgedWebhook",
    ("AUTH", "AUTOMATICALLY_VERIFIED"): "AutomaticallyVerifiedWebhook",
    ("AUTH", "VERIFICATION_EXPIRED"): "VerificationExpiredWebhook",
}


def webhook_problems(spec: PlaidSpec, body: dict[str, Any]) -> list[str]:
    key = (str(body.get("webhook_type")), str(body.get("webhook_code")))
    schema = WEBHOOK_SCHEMAS.get(key)
    if schema is None:
        return [f"no schema known for webhook {key}"]
    return [f"{schema} {line}" for line in spec.schema_errors(schema, body)]


def assert_bodies_conform(spec: PlaidSpec, bodies: list[dict[str, Any]]) -> None:
    problems = [line for body in bodies for line in webhook_problems(spec, body)]
    assert not problems, "\n".join(["webhook bodies do not match Plaid's spec:", *problems])


def fire(wire: EmulatorWire, item: Item, code: str) -> None:
    """Fire `code` through /sandbox/item/fire_webhook; codes Plaid's sandbox cannot fire are
    emulator extensions, so only their answer (not their request) is held to the spec."""
    request = {"access_token": item.access_token, "webhook_code": code}
    if code in wire.spec.property_enum("SandboxItemFireWebhookRequest", "webhook_code"):
        wire.ok("/sandbox/item/fire_webhook", request)
        return
    response = wire.post("/sandbox/item/fire_webhook", request)
    assert response.status_code == 200, response.text
    problems = wire.spec.response_errors(
        "/sandbox/item/fire_webhook", 200, response.content, response.headers["content-type"]
    )
    assert not problems, problems


def test_every_emulated_webhook_has_a_schema(plaid_spec: PlaidSpec) -> None:
    assert set(WEBHOOK_SCHEMAS) == {(kind, code) for code, kind in WEBHOOK_TYPES.items()}
    assert set(WEBHOOK_SCHEMAS.values()) <= plaid_spec.schema_names()


@pytest.mark.parametrize("code", sorted(WEBHOOK_TYPES))
def test_fired_webhook_body(wire: EmulatorWire, code: str) -> None:
    item = wire.link_item()
    fire(wire, item, code)
    bodies = wire.webhook_bodies(item.item_id)
    assert code in [body["webhook_code"] for body in bodies]
    assert_bodies_conform(wire.spec, bodies)


def test_webhooks_of_the_item_lifecycle(wire: EmulatorWire) -> None:
    """What an Item sees without the sandbox firing anything: data ready, new data, a webhook
    URL change, a login error and its repair."""
    item = wire.link_item()
    for _ in range(2):  # NOT_READY, then the history: SYNC_UPDATES_AVAILABLE follows
        wire.ok("/transactions/sync", {"access_token": item.access_token})
    wire.control("POST", "/emulator/advance", json={"itemId": item.item_id, "add": 2, "remove": 1})
    wire.ok("/transactions/refresh", {"access_token": item.access_token})
    wire.ok(
        "/item/webhook/update",
        {"access_token": item.access_token, "webhook": "http://127.0.0.1:9/v2"},
    )
    wire.ok("/sandbox/item/reset_login", {"access_token": item.access_token})
    wire.control("POST", f"/emulator/items/{item.item_id}/repair")

    bodies = wire.webhook_bodies(item.item_id)
    codes = [body["webhook_code"] for body in bodies]
    assert codes.count("SYNC_UPDATES_AVAILABLE") >= 3
    assert {"WEBHOOK_UPDATE_ACKNOWLEDGED", "ERROR", "LOGIN_REPAIRED"} <= set(codes)
    error = next(body for body in bodies if body["webhook_code"] == "ERROR")["error"]
    assert error["error_code"] == "ITEM_LOGIN_REQUIRED"
    assert_bodies_conform(wire.spec, bodies)
