"""Bad input gets Plaid-shaped errors with Plaid's statuses: never a 500, never a traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.emulator.plaid_http import CLIENT_ID, CREDENTIALS, SECRET, PlaidHTTP

ERROR_FIELDS = {
    "error_type",
    "error_code",
    "error_code_reason",
    "error_message",
    "display_message",
    "documentation_url",
    "suggested_action",
    "request_id",
}


def assert_plaid_error(
    response: httpx.Response, status: int, error_type: str, error_code: str
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_FIELDS
    assert (body["error_type"], body["error_code"]) == (error_type, error_code)
    assert body["request_id"]
    assert isinstance(body["error_message"], str)
    return body


@pytest.mark.parametrize(
    ("path", "body", "missing"),
    [
        ("/transactions/sync", {}, "access_token"),
        ("/item/public_token/exchange", {}, "public_token"),
        ("/sandbox/public_token/create", {"initial_products": ["transactions"]}, "institution_id"),
        ("/webhook_verification_key/get", {}, "key_id"),
        ("/institutions/get_by_id", {"institution_id": "ins_109508"}, "country_codes"),
        (
            "/link/token/create",
            {"client_name": "Operate", "language": "en", "country_codes": ["US"], "user": {}},
            "user.client_user_id",
        ),
        (
            "/link/token/create",
            {
                "client_name": "Operate",
                "language": "en",
                "country_codes": ["US"],
                "user": {"client_user_id": "u1"},
            },
            "products",
        ),
    ],
)
def test_missing_field_is_named(
    plaid: PlaidHTTP, path: str, body: dict[str, Any], missing: str
) -> None:
    error = assert_plaid_error(plaid.post(path, body), 400, "INVALID_REQUEST", "MISSING_FIELDS")
    assert missing in error["error_message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 501}, "count"),
        ({"count": "100"}, "count"),
        ({"count": 1.5}, "count"),
        ({"cursor": 12}, "cursor"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"options": "yes"}, "options"),
    ],
)
def test_invalid_sync_field_is_named(plaid: PlaidHTTP, body: dict[str, Any], field: str) -> None:
    item = plaid.link_item()
    response = plaid.post("/transactions/sync", {"access_token": item.access_token, **body})
    error = assert_plaid_error(response, 400, "INVALID_REQUEST", "INVALID_FIELD")
    assert field in error["error_message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"access_token": 42}, "access_token"),
        ({"access_token": None}, "access_token"),
    ],
)
def test_wrong_type_is_invalid_field(plaid: PlaidHTTP, body: dict[str, Any], field: str) -> None:
    error = assert_plaid_error(
        plaid.post("/accounts/get", body), 400, "INVALID_REQUEST", "INVALID_FIELD"
    )
    assert field in error["error_message"]


@pytest.mark.parametrize("product", ["balance", "transaction"])
def test_unknown_or_balance_product_is_refused(plaid: PlaidHTTP, product: str) -> None:
    response = plaid.post(
        "/sandbox/public_token/create",
        {"institution_id": "ins_109508", "initial_products": [product]},
    )
    error = assert_plaid_error(response, 400, "INVALID_REQUEST", "INVALID_FIELD")
    assert "initial_products" in error["error_message"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_malformed_body(plaid: PlaidHTTP, raw: bytes) -> None:
    response = plaid.client.post(
        "/item/get", content=raw, headers={**CREDENTIALS, "Content-Type": "application/json"}
    )
    assert_plaid_error(response, 400, "INVALID_REQUEST", "INVALID_BODY")


def test_unknown_access_token(plaid: PlaidHTTP) -> None:
    response = plaid.post("/accounts/get", {"access_token": "access-sandbox-unknown"})
    assert_plaid_error(response, 400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN")


def test_removed_item_token_is_item_not_found(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    plaid.ok("/item/remove", {"access_token": item.access_token})
    for path in ("/item/get", "/accounts/get", "/transactions/sync", "/item/remove"):
        response = plaid.post(path, {"access_token": item.access_token})
        assert_plaid_error(response, 400, "ITEM_ERROR", "ITEM_NOT_FOUND")


def test_public_token_works_once(plaid: PlaidHTTP) -> None:
    public = plaid.ok(
        "/sandbox/public_token/create",
        {"institution_id": "ins_109509", "initial_products": ["transactions"]},
    )["public_token"]
    plaid.ok("/item/public_token/exchange", {"public_token": public})
    again = plaid.post("/item/public_token/exchange", {"public_token": public})
    assert_plaid_error(again, 400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")


def test_unknown_institution(plaid: PlaidHTTP) -> None:
    response = plaid.post(
        "/institutions/get_by_id", {"institution_id": "ins_nope", "country_codes": ["US"]}
    )
    assert_plaid_error(response, 400, "INVALID_INPUT", "INVALID_INSTITUTION")


@pytest.mark.parametrize(
    "headers",
    [
        {"PLAID-CLIENT-ID": CLIENT_ID, "PLAID-SECRET": "wrong"},
        {"PLAID-CLIENT-ID": "someone-else", "PLAID-SECRET": SECRET},
    ],
)
def test_wrong_credentials(plaid: PlaidHTTP, headers: dict[str, str]) -> None:
    response = plaid.client.post("/item/get", json={"access_token": "x"}, headers=headers)
    assert_plaid_error(response, 400, "INVALID_INPUT", "INVALID_API_KEYS")


def test_missing_credentials(plaid: PlaidHTTP) -> None:
    response = plaid.client.post("/item/get", json={"access_token": "x"})
    error = assert_plaid_error(response, 400, "INVALID_REQUEST", "MISSING_FIELDS")
    assert "client_id" in error["error_message"]
    assert "secret" in error["error_message"]


def test_credentials_in_body_are_accepted_and_redacted_in_the_call_log(plaid: PlaidHTTP) -> None:
    response = plaid.client.post(
        "/institutions/get_by_id",
        json={
            "client_id": CLIENT_ID,
            "secret": SECRET,
            "institution_id": "ins_109508",
            "country_codes": ["US"],
        },
    )
    assert response.status_code == 200, response.text
    calls = plaid.control("GET", "/emulator/calls", params={"endpoint": "/institutions/get_by_id"})
    assert calls["count"] == 1
    assert calls["calls"][0]["request"]["secret"] == "***"
    assert SECRET not in str(calls)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/nope"), ("POST", "/transactions/get_all"), ("GET", "/item/get"), ("PUT", "/")],
)
def test_unknown_path_or_method_is_plaid_404(plaid: PlaidHTTP, method: str, path: str) -> None:
    response = plaid.client.request(method, path, json={}, headers=CREDENTIALS)
    assert_plaid_error(response, 404, "INVALID_REQUEST", "NOT_FOUND")


def test_control_endpoints_answer_bad_input_plaid_shaped(plaid: PlaidHTTP) -> None:
    assert_plaid_error(
        plaid.client.post("/emulator/faults", content=b"{oops"),
        400,
        "INVALID_REQUEST",
        "INVALID_BODY",
    )
    assert_plaid_error(
        plaid.client.post("/emulator/faults", json={"endpoint": "/item/get", "count": 0}),
        400,
        "INVALID_REQUEST",
        "INVALID_FIELD",
    )
    assert_plaid_error(
        plaid.client.get("/emulator/ledger", params={"item_id": "missing"}),
        404,
        "ITEM_ERROR",
        "ITEM_NOT_FOUND",
    )
    assert_plaid_error(
        plaid.client.post("/emulator/advance", json={"days": "two"}),
        400,
        "INVALID_REQUEST",
        "INVALID_FIELD",
    )


def test_every_call_is_logged_with_its_outcome(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    plaid.post("/accounts/get", {"access_token": item.access_token})
    plaid.post("/accounts/get", {"access_token": "access-sandbox-unknown"})
    calls = plaid.control("GET", "/emulator/calls", params={"endpoint": "/accounts/get"})
    assert calls["count"] == 2
    first, second = calls["calls"]
    assert (first["status"], first["errorCode"], first["itemId"]) == (200, None, item.item_id)
    assert (second["status"], second["errorCode"]) == (400, "INVALID_ACCESS_TOKEN")
    assert first["request"] == {"access_token": item.access_token}
    assert first["at"].endswith("Z")
