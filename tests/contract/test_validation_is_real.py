"""The checks bite: real bodies pass, the same bodies with one deliberate violation fail.

Without these, a validator that matched no path, resolved no `$ref` or ignored nested schemas
would make every contract test pass vacuously.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from plaid_bridge.plaid import PlaidClient, PlaidError
from tests.contract.emulator_wire import CLIENT_ID, SECRET, WEBHOOK, EmulatorWire
from tests.contract.plaid_spec import PlaidSpec

SYNC = "/transactions/sync"


@pytest.fixture
def full_page(wire: EmulatorWire) -> dict[str, Any]:
    """A real 500-transaction /transactions/sync answer (already checked as conforming)."""
    item = wire.link_item(webhook=None)
    wire.ok(SYNC, {"access_token": item.access_token})  # NOT_READY
    page = wire.ok(SYNC, {"access_token": item.access_token, "count": 500})
    assert page["added"]
    return page


def sync_problems(spec: PlaidSpec, page: dict[str, Any]) -> str:
    return "\n".join(spec.response_errors(SYNC, 200, page))


def test_sync_page_without_next_cursor_fails(wire: EmulatorWire, full_page: dict[str, Any]) -> None:
    broken = {key: value for key, value in full_page.items() if key != "next_cursor"}
    assert "'next_cursor' is a required property" in sync_problems(wire.spec, broken)


def test_sync_page_with_unknown_update_status_fails(
    wire: EmulatorWire, full_page: dict[str, Any]
) -> None:
    broken = {**full_page, "transactions_update_status": "DONE"}
    assert "'DONE' is not one of" in sync_problems(wire.spec, broken)


def test_nested_transaction_fields_are_checked(
    wire: EmulatorWire, full_page: dict[str, Any]
) -> None:
    """Transaction is an allOf of $refs: a bad enum and a bad type deep inside are found."""
    broken = copy.deepcopy(full_page)
    broken["added"][499]["payment_channel"] = "telepathy"
    broken["added"][0]["amount"] = "12.34"
    problems = sync_problems(wire.spec, broken)
    assert "$.added[499].payment_channel: 'telepathy' is not one of" in problems
    assert "$.added[0].amount: '12.34' is not of type 'number'" in problems


def test_error_body_with_unknown_type_or_missing_message_fails(plaid_spec: PlaidSpec) -> None:
    error = {
        "error_type": "INVALID_INPUT",
        "error_code": "INVALID_ACCESS_TOKEN",
        "error_message": "provided access token is invalid or unknown",
        "display_message": None,
        "request_id": "r1",
    }
    assert not plaid_spec.response_errors("/item/get", 400, error)
    bad_type = "\n".join(
        plaid_spec.response_errors("/item/get", 400, {**error, "error_type": "OOPS"})
    )
    assert "'OOPS' is not one of" in bad_type
    no_message = {key: value for key, value in error.items() if key != "error_message"}
    assert "'error_message' is a required property" in "\n".join(
        plaid_spec.response_errors("/item/get", 400, no_message)
    )


def test_unknown_path_is_a_problem_not_a_pass(plaid_spec: PlaidSpec) -> None:
    assert plaid_spec.response_errors("/transactions/synch", 200, {})
    assert plaid_spec.request_errors("/transactions/synch", {})


def test_request_with_an_unknown_field_fails(plaid_spec: PlaidSpec) -> None:
    problems = plaid_spec.request_errors(
        SYNC, {"access_token": "access-sandbox-1", "count": 500, "days_requested": 30}
    )
    assert any("'days_requested' was unexpected" in line for line in problems)


def test_request_without_credential_headers_fails(plaid_spec: PlaidSpec) -> None:
    body = {"access_token": "access-sandbox-1"}
    assert not plaid_spec.request_errors("/item/get", body)  # the body alone is fine
    assert plaid_spec.request_errors("/item/get", body, headers={"Plaid-Version": "2020-09-14"})


def test_webhook_with_wrong_environment_or_missing_item_fails(plaid_spec: PlaidSpec) -> None:
    body = {
        "webhook_type": "TRANSACTIONS",
        "webhook_code": "SYNC_UPDATES_AVAILABLE",
        "item_id": "item-1",
        "initial_update_complete": True,
        "historical_update_complete": True,
        "environment": "sandbox",
    }
    assert not plaid_spec.schema_errors("SyncUpdatesAvailableWebhook", body)
    staging = plaid_spec.schema_errors("SyncUpdatesAvailableWebhook", {**body, "environment": "x"})
    assert any("'x' is not one of" in line for line in staging)
    no_item = {key: value for key, value in body.items() if key != "item_id"}
    assert plaid_spec.schema_errors("SyncUpdatesAvailableWebhook", no_item) == [
        "$: 'item_id' is a required property"
    ]


@pytest.mark.anyio
async def test_product_typo_sent_by_the_client_is_caught(wire: EmulatorWire) -> None:
    """The SDK lets `Products("transaction")` through; the recorded body fails the spec."""
    client = PlaidClient(
        host=str(wire.client.base_url),
        client_id=CLIENT_ID,
        secret=SECRET,
        max_retries=0,
        products=("transaction",),
        webhook=WEBHOOK,
    )
    try:
        with pytest.raises(PlaidError):  # the emulator refuses it too
            await client.create_link_token(user_id="user-1")
    finally:
        client.close()
    sent = wire.calls("/link/token/create")[-1]["request"]
    assert sent["products"] == ["transaction"]
    problems = wire.spec.request_errors("/link/token/create", sent)
    assert any("$.products[0]: 'transaction' is not one of" in line for line in problems)
