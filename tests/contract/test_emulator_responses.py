"""The emulator's answers, byte for byte, against Plaid's OpenAPI response schemas.

Every call goes through `EmulatorWire.ok` (request and 200 response must both conform) or
`EmulatorWire.fails` (the error body must conform to PlaidError, the `default` response).
Each test also asserts the state it means to cover (an Item error, a full page, removals...),
so a conforming answer is never a vacuous one.
"""

from __future__ import annotations

from typing import Any

import pytest

from plaid_bridge.emulator.errors import CATALOGUE
from tests.contract.emulator_wire import (
    CLIENT_ID,
    HISTORY,
    INSTITUTION,
    SECRET,
    WEBHOOK,
    EmulatorWire,
)

FULL_PAGE = 500


def link_token_request(**fields: Any) -> dict[str, Any]:
    return {
        "client_name": "Operate",
        "language": "en",
        "country_codes": ["US", "CA"],
        "user": {"client_user_id": "user-1"},
        "webhook": WEBHOOK,
        **fields,
    }


def ready_cursor(wire: EmulatorWire, access_token: str) -> str:
    """Spend the Item's NOT_READY answer, then page to the end; returns the final cursor."""
    first = wire.ok("/transactions/sync", {"access_token": access_token, "count": FULL_PAGE})
    assert first["transactions_update_status"] == "NOT_READY"
    cursor = ""
    while True:
        page = wire.ok(
            "/transactions/sync",
            {"access_token": access_token, "cursor": cursor, "count": FULL_PAGE},
        )
        cursor = str(page["next_cursor"])
        if not page["has_more"]:
            return cursor


# ---- Link and Items -----------------------------------------------------------------------


def test_link_token_create_new_mode(wire: EmulatorWire) -> None:
    body = wire.ok(
        "/link/token/create",
        link_token_request(products=["transactions"], transactions={"days_requested": 730}),
    )
    assert body["link_token"]


def test_link_token_create_update_mode(wire: EmulatorWire) -> None:
    item = wire.link_item()
    body = wire.ok(
        "/link/token/create",
        link_token_request(
            access_token=item.access_token, update={"account_selection_enabled": True}
        ),
    )
    assert body["link_token"]


def test_public_token_create_and_exchange(wire: EmulatorWire) -> None:
    public = wire.ok(
        "/sandbox/public_token/create",
        {
            "institution_id": INSTITUTION,
            "initial_products": ["transactions"],
            "options": {"webhook": WEBHOOK},
        },
    )
    exchanged = wire.ok("/item/public_token/exchange", {"public_token": public["public_token"]})
    assert exchanged["access_token"].startswith("access-")
    assert exchanged["item_id"]


def test_item_get_healthy(wire: EmulatorWire) -> None:
    item = wire.link_item()
    body = wire.ok("/item/get", {"access_token": item.access_token})
    assert body["item"]["item_id"] == item.item_id
    assert body["item"]["error"] is None


def test_item_get_after_reset_login_carries_the_error(wire: EmulatorWire) -> None:
    item = wire.link_item()
    assert wire.ok("/sandbox/item/reset_login", {"access_token": item.access_token})["reset_login"]
    body = wire.ok("/item/get", {"access_token": item.access_token})
    assert body["item"]["error"]["error_code"] == "ITEM_LOGIN_REQUIRED"


def test_item_remove(wire: EmulatorWire) -> None:
    item = wire.link_item()
    wire.ok("/item/remove", {"access_token": item.access_token})
    wire.fails("/item/get", {"access_token": item.access_token}, code="ITEM_NOT_FOUND")


def test_item_webhook_update(wire: EmulatorWire) -> None:
    item = wire.link_item()
    body = wire.ok(
        "/item/webhook/update",
        {"access_token": item.access_token, "webhook": WEBHOOK + "/updated"},
    )
    assert body["item"]["webhook"] == WEBHOOK + "/updated"


# ---- accounts and institutions ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/accounts/get", "/accounts/balance/get"])
def test_accounts(wire: EmulatorWire, path: str) -> None:
    item = wire.link_item()
    every = wire.ok(path, {"access_token": item.access_token})
    assert every["accounts"]
    first = every["accounts"][0]["account_id"]
    chosen = wire.ok(path, {"access_token": item.access_token, "options": {"account_ids": [first]}})
    assert [account["account_id"] for account in chosen["accounts"]] == [first]


@pytest.mark.parametrize(
    "options",
    [None, {"include_optional_metadata": True, "include_status": True}],
    ids=["plain", "metadata-and-status"],
)
def test_institutions_get_by_id(wire: EmulatorWire, options: dict[str, bool] | None) -> None:
    request: dict[str, Any] = {"institution_id": INSTITUTION, "country_codes": ["US"]}
    if options is not None:
        request["options"] = options
    body = wire.ok("/institutions/get_by_id", request)
    assert body["institution"]["institution_id"] == INSTITUTION
    if options is not None:
        assert body["institution"]["status"] is not None


# ---- transactions -------------------------------------------------------------------------


def test_sync_not_ready_page(wire: EmulatorWire) -> None:
    item = wire.link_item()
    page = wire.ok("/transactions/sync", {"access_token": item.access_token})
    assert page["transactions_update_status"] == "NOT_READY"
    assert page["next_cursor"] == ""


def test_sync_full_page_and_the_last_one(wire: EmulatorWire) -> None:
    item = wire.link_item()
    wire.ok("/transactions/sync", {"access_token": item.access_token})  # NOT_READY
    full = wire.ok("/transactions/sync", {"access_token": item.access_token, "count": FULL_PAGE})
    assert len(full["added"]) == FULL_PAGE
    assert full["has_more"]
    last = wire.ok(
        "/transactions/sync",
        {"access_token": item.access_token, "cursor": full["next_cursor"], "count": FULL_PAGE},
    )
    assert len(last["added"]) == HISTORY - FULL_PAGE
    assert not last["has_more"]


def test_sync_after_advance_with_modified_and_removed(wire: EmulatorWire) -> None:
    item = wire.link_item()
    cursor = ready_cursor(wire, item.access_token)
    wire.control(
        "POST",
        "/emulator/advance",
        json={"itemId": item.item_id, "days": 2, "add": 5, "modify": 4, "post": 2, "remove": 3},
    )
    page = wire.ok(
        "/transactions/sync",
        {"access_token": item.access_token, "cursor": cursor, "count": FULL_PAGE},
    )
    assert page["added"]
    assert page["modified"]
    assert page["removed"]
    assert any(txn["pending_transaction_id"] for txn in page["added"])


def test_transactions_refresh(wire: EmulatorWire) -> None:
    item = wire.link_item()
    wire.ok("/transactions/refresh", {"access_token": item.access_token})


# ---- webhooks and sandbox -----------------------------------------------------------------


def test_webhook_verification_key_get_current_and_expired(wire: EmulatorWire) -> None:
    rotated = wire.control("POST", "/emulator/webhook-keys/rotate")
    current = wire.ok("/webhook_verification_key/get", {"key_id": rotated["keyId"]})
    assert current["key"]["expired_at"] is None
    expired = wire.ok("/webhook_verification_key/get", {"key_id": rotated["expiredKeyId"]})
    assert expired["key"]["expired_at"] is not None


def test_sandbox_item_fire_webhook(wire: EmulatorWire) -> None:
    item = wire.link_item()
    body = wire.ok(
        "/sandbox/item/fire_webhook",
        {
            "access_token": item.access_token,
            "webhook_type": "TRANSACTIONS",
            "webhook_code": "DEFAULT_UPDATE",
        },
    )
    assert body["webhook_fired"]


def test_sandbox_item_reset_login(wire: EmulatorWire) -> None:
    item = wire.link_item()
    assert wire.ok("/sandbox/item/reset_login", {"access_token": item.access_token})["reset_login"]


# ---- errors (PlaidError, the `default` response of every path) -----------------------------


def test_invalid_api_keys_with_credentials_in_the_body(wire: EmulatorWire) -> None:
    item = wire.link_item()
    request = {"access_token": item.access_token, "client_id": CLIENT_ID, "secret": "wrong"}
    # Credentials in the body are legal Plaid requests too.
    assert not wire.spec.request_errors("/item/get", request)
    error = wire.fails("/item/get", request, code="INVALID_API_KEYS", headers={})
    assert error["error_type"] == "INVALID_INPUT"
    right = {**request, "secret": SECRET}
    response = wire.post("/item/get", right, headers={})
    assert response.status_code == 200, response.text
    assert not wire.spec.exchange_errors(response)


def test_invalid_access_token(wire: EmulatorWire) -> None:
    wire.fails(
        "/accounts/get",
        {"access_token": "access-sandbox-00000000-0000-0000-0000-000000000000"},
        code="INVALID_ACCESS_TOKEN",
    )


def test_missing_field(wire: EmulatorWire) -> None:
    request = {"country_codes": ["US"]}
    assert wire.spec.request_errors("/institutions/get_by_id", request)  # Plaid's view too
    error = wire.fails("/institutions/get_by_id", request, code="MISSING_FIELDS")
    assert "institution_id" in error["error_message"]


def test_item_error_from_a_data_endpoint(wire: EmulatorWire) -> None:
    item = wire.link_item()
    wire.ok("/sandbox/item/reset_login", {"access_token": item.access_token})
    error = wire.fails(
        "/accounts/get", {"access_token": item.access_token}, code="ITEM_LOGIN_REQUIRED"
    )
    assert error["display_message"]


def test_sync_mutation_during_pagination(wire: EmulatorWire) -> None:
    item = wire.link_item()
    wire.ok("/transactions/sync", {"access_token": item.access_token})  # NOT_READY
    full = wire.ok("/transactions/sync", {"access_token": item.access_token, "count": FULL_PAGE})
    assert full["has_more"]
    wire.control("POST", "/emulator/advance", json={"itemId": item.item_id, "add": 1})
    wire.fails(
        "/transactions/sync",
        {"access_token": item.access_token, "cursor": full["next_cursor"], "count": FULL_PAGE},
        code="TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
    )


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_injected_fault(wire: EmulatorWire, code: str) -> None:
    """Every error the emulator can be told to answer renders as Plaid's error body."""
    item = wire.link_item(webhook=None)
    wire.control(
        "POST",
        "/emulator/faults",
        json={"endpoint": "/item/get", "errorCode": code, "itemId": item.item_id},
    )
    error = wire.fails("/item/get", {"access_token": item.access_token}, code=code)
    assert error["error_type"] == CATALOGUE[code].error_type


def test_injected_rate_limit_names_the_endpoint_limit(wire: EmulatorWire) -> None:
    item = wire.link_item(webhook=None)
    wire.control(
        "POST",
        "/emulator/faults",
        json={"endpoint": "/transactions/sync", "errorCode": "RATE_LIMIT_EXCEEDED"},
    )
    error = wire.fails(
        "/transactions/sync", {"access_token": item.access_token}, code="TRANSACTIONS_SYNC_LIMIT"
    )
    assert error["error_type"] == "RATE_LIMIT_EXCEEDED"
