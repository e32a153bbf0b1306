"""Fault injection: Plaid's status and error type per code, for `count` calls; latency; drops."""

from __future__ import annotations

import time

import httpx
import pytest
import urllib3
from plaid import ApiClient, Configuration
from plaid.api import plaid_api
from plaid.model.accounts_get_request import AccountsGetRequest

from plaid_bridge.emulator import EmulatorServer
from tests.emulator.plaid_http import CLIENT_ID, SECRET, LinkedItem, PlaidHTTP


def ready_item(plaid_http: PlaidHTTP) -> LinkedItem:
    item = plaid_http.link_item()
    plaid_http.sync_until_ready(item.access_token)
    return item


def add_fault(plaid_http: PlaidHTTP, **fault: object) -> dict[str, object]:
    registered: dict[str, object] = plaid_http.control("POST", "/emulator/faults", json=fault)[
        "fault"
    ]
    return registered


@pytest.mark.parametrize(
    ("endpoint", "code", "status", "error_type", "error_code"),
    [
        ("/accounts/get", "INTERNAL_SERVER_ERROR", 500, "API_ERROR", "INTERNAL_SERVER_ERROR"),
        ("/item/get", "PLANNED_MAINTENANCE", 503, "API_ERROR", "PLANNED_MAINTENANCE"),
        ("/accounts/get", "INSTITUTION_DOWN", 400, "INSTITUTION_ERROR", "INSTITUTION_DOWN"),
        ("/item/get", "ITEM_LOGIN_REQUIRED", 400, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED"),
        (
            "/transactions/sync",
            "RATE_LIMIT_EXCEEDED",
            429,
            "RATE_LIMIT_EXCEEDED",
            "TRANSACTIONS_SYNC_LIMIT",
        ),
        (
            "/accounts/balance/get",
            "RATE_LIMIT_EXCEEDED",
            429,
            "RATE_LIMIT_EXCEEDED",
            "BALANCE_LIMIT",
        ),
        ("/item/remove", "RATE_LIMIT_EXCEEDED", 429, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT"),
        ("/item/get", "ITEM_GET_LIMIT", 429, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT"),
        (
            "/transactions/sync",
            "CREDITS_EXHAUSTED",
            429,
            "RATE_LIMIT_EXCEEDED",
            "CREDITS_EXHAUSTED",
        ),
        (
            "/transactions/sync",
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
            400,
            "TRANSACTIONS_ERROR",
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
        ),
        ("/accounts/get", "INVALID_API_KEYS", 400, "INVALID_INPUT", "INVALID_API_KEYS"),
        ("/item/get", "INVALID_ACCESS_TOKEN", 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN"),
        ("/transactions/sync", "PRODUCT_NOT_READY", 400, "ITEM_ERROR", "PRODUCT_NOT_READY"),
    ],
)
def test_error_fault_for_count_calls_then_stops(
    plaid: PlaidHTTP, endpoint: str, code: str, status: int, error_type: str, error_code: str
) -> None:
    item = ready_item(plaid)
    add_fault(plaid, endpoint=endpoint, errorCode=code, count=2)
    body = {"access_token": item.access_token}
    for _ in range(2):
        response = plaid.post(endpoint, body)
        assert response.status_code == status, response.text
        error = response.json()
        assert (error["error_type"], error["error_code"]) == (error_type, error_code)
        assert error["request_id"]
    assert plaid.post(endpoint, body).status_code == 200

    calls = plaid.control("GET", "/emulator/calls", params={"endpoint": endpoint})["calls"]
    assert [c["status"] for c in calls[-3:]] == [status, status, 200]
    assert calls[-2]["errorCode"] == error_code


def test_unknown_error_code_is_refused(plaid: PlaidHTTP) -> None:
    response = plaid.client.post(
        "/emulator/faults", json={"endpoint": "/item/get", "errorCode": "NOT_A_CODE"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_FIELD"
    assert plaid.control("GET", "/emulator/faults")["faults"] == []


def test_fault_targets_one_item(plaid: PlaidHTTP) -> None:
    one, other = ready_item(plaid), ready_item(plaid)
    add_fault(plaid, endpoint="/accounts/get", errorCode="INSTITUTION_DOWN", itemId=one.item_id)
    assert plaid.post("/accounts/get", {"access_token": other.access_token}).status_code == 200
    assert plaid.post("/accounts/get", {"access_token": one.access_token}).status_code == 400
    assert plaid.post("/accounts/get", {"access_token": one.access_token}).status_code == 200


def test_fault_targets_a_page_of_the_sync_loop(plaid: PlaidHTTP) -> None:
    item = ready_item(plaid)
    add_fault(plaid, endpoint="/transactions/sync", errorCode="INTERNAL_SERVER_ERROR", page=3)
    first = plaid.sync(item.access_token, "", count=100)
    second = plaid.sync(item.access_token, first.json()["next_cursor"], count=100)
    assert (first.status_code, second.status_code) == (200, 200)
    third_cursor = second.json()["next_cursor"]
    assert plaid.sync(item.access_token, third_cursor, count=100).status_code == 500
    third = plaid.sync(item.access_token, third_cursor, count=100)
    assert third.status_code == 200
    assert third.json()["has_more"] is False


def test_delete_clears_faults(plaid: PlaidHTTP) -> None:
    item = ready_item(plaid)
    add_fault(plaid, endpoint="/accounts/get", errorCode="INTERNAL_SERVER_ERROR", count=5)
    assert plaid.control("GET", "/emulator/faults")["faults"][0]["remaining"] == 5
    assert plaid.control("DELETE", "/emulator/faults") == {"cleared": 1}
    assert plaid.post("/accounts/get", {"access_token": item.access_token}).status_code == 200


def test_latency_delays_the_answer(plaid: PlaidHTTP) -> None:
    item = ready_item(plaid)
    add_fault(plaid, endpoint="/item/get", latencyMs=300)
    started = time.monotonic()
    response = plaid.post("/item/get", {"access_token": item.access_token})
    delayed = time.monotonic() - started
    assert response.status_code == 200
    assert delayed >= 0.3
    # The fault was used up by that call: the next one is answered without it.
    assert plaid.control("GET", "/emulator/faults")["faults"] == []
    plaid.ok("/item/get", {"access_token": item.access_token})


def test_latency_with_an_error(plaid: PlaidHTTP) -> None:
    item = ready_item(plaid)
    add_fault(plaid, endpoint="/item/get", latencyMs=100, errorCode="INTERNAL_SERVER_ERROR")
    started = time.monotonic()
    response = plaid.post("/item/get", {"access_token": item.access_token})
    assert time.monotonic() - started >= 0.1
    assert response.status_code == 500


def test_dropped_connection_breaks_the_response(plaid: PlaidHTTP) -> None:
    item = ready_item(plaid)
    add_fault(plaid, endpoint="/accounts/get", dropConnection=True)
    with pytest.raises(httpx.RemoteProtocolError):
        plaid.post("/accounts/get", {"access_token": item.access_token})
    assert plaid.post("/accounts/get", {"access_token": item.access_token}).status_code == 200
    dropped = plaid.control("GET", "/emulator/calls", params={"endpoint": "/accounts/get"})
    assert dropped["calls"][0]["status"] is None
    assert dropped["calls"][0]["errorCode"] == "CONNECTION_DROPPED"


def test_dropped_connection_is_a_connection_error_for_the_sdk(
    plaid: PlaidHTTP, emulator: EmulatorServer
) -> None:
    item = ready_item(plaid)
    add_fault(plaid, endpoint="/accounts/get", dropConnection=True)
    configuration = Configuration(
        host=emulator.url,
        api_key={"clientId": CLIENT_ID, "secret": SECRET, "plaidVersion": "2020-09-14"},
    )
    with ApiClient(configuration) as api_client:
        client = plaid_api.PlaidApi(api_client)
        request = AccountsGetRequest(access_token=item.access_token)
        with pytest.raises(urllib3.exceptions.ProtocolError):
            client.accounts_get(request, _request_timeout=5)
        assert client.accounts_get(request, _request_timeout=5).accounts
