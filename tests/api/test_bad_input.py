"""Hostile or broken input at the edge: every case is a 4xx in the error envelope, never a 500,
on SQLite and on PostgreSQL (which refuses NUL in text and integers past 64 bits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from plaid_bridge.transactions import cursors
from plaid_bridge.transactions.feed import Pass, encode_cursor
from tests.conftest import Api

pytestmark = pytest.mark.anyio

BASE = "/api/v1/plaid"
NUL = "\u0000"


def _deep_filters(levels: int) -> dict[str, Any]:
    nested: dict[str, Any] = {"account_subtypes": ["checking"]}
    for _ in range(levels):
        nested = {"depository": nested}
    return nested


@dataclass(frozen=True)
class Case:
    method: str
    path: str | Callable[[str], str]
    status: int = 400
    json: Any = None
    content: bytes | None = None
    params: dict[str, str] = field(default_factory=dict)
    role: str = "OWNER"

    def url(self, item_id: str) -> str:
        return BASE + (self.path(item_id) if callable(self.path) else self.path)


def _at(origin: int) -> Pass:
    """A feed position at rest at `origin` (a number the database may not hold)."""
    return Pass(origin, None, (0, ""))


def _feed(cursor: Callable[[str], str]) -> Callable[[str], str]:
    return lambda item: f"/transactions/{item}/sync?cursor={cursor(item)}"


CASES = {
    # NUL and other control characters in ids, cursors and query parameters
    "accounts-nul": Case("GET", "/accounts/%00"),
    "accounts-control": Case("GET", "/accounts/a%1Fb"),
    "accounts-overlong": Case("GET", "/accounts/" + "a" * 129),
    "feed-nul-item": Case("GET", "/transactions/a%00b/sync"),
    "health-nul": Case("GET", "/connections/%00/health"),
    "sync-nul": Case("POST", "/connections/%00/sync"),
    "delete-nul": Case("DELETE", "/connections/a%00"),
    "reauth-nul": Case("POST", "/connections/%00/reauth", json={}),
    "transactions-item-nul": Case("GET", "/transactions", params={"itemId": NUL}),
    "transactions-account-nul": Case("GET", "/transactions", params={"accountId": NUL}),
    "audit-item-nul": Case("GET", "/audit", params={"itemId": NUL}),
    "feed-cursor-nul": Case("GET", lambda item: f"/transactions/{item}/sync?cursor=a%00b"),
    "feed-cursor-holding-nul": Case(
        "GET", _feed(lambda item: encode_cursor(item, Pass(1, 1, (1, "tx" + NUL))))
    ),
    "list-cursor-holding-nul": Case(
        "GET", "/transactions", params={"after": cursors.encode(["2024-01-01" + NUL, 1])}
    ),
    # integers past what a BIGINT holds
    "events-after-2^63": Case("GET", "/events", params={"after": str(2**63)}),
    "audit-after-2^63": Case("GET", "/audit", params={"after": str(2**63)}),
    "events-after-negative": Case("GET", "/events", params={"after": "-1"}),
    "feed-cursor-2^63": Case(
        "GET", _feed(lambda item: encode_cursor(item, Pass(2**63, None, (0, ""))))
    ),
    "feed-cursor-2^70": Case(
        "GET", _feed(lambda item: encode_cursor(item, Pass(2**70, None, (0, ""))))
    ),
    "list-cursor-2^63": Case(
        "GET", "/transactions", params={"after": cursors.encode(["2024-01-01", 2**63])}
    ),
    "list-cursor-2^70": Case(
        "GET", "/transactions", params={"after": cursors.encode(["2024-01-01", 2**70])}
    ),
    "replay-2^63": Case("POST", f"/webhooks/{2**63}/replay"),
    # bodies: Plaid's account_filters shape, NUL in stored text, broken JSON
    "filters-600-deep": Case(
        "POST", "/create-link-token", json={"accountFilters": _deep_filters(600)}
    ),
    "filters-unknown-type": Case(
        "POST", "/create-link-token", json={"accountFilters": {"savings": {"account_subtypes": []}}}
    ),
    "filters-unknown-subtype": Case(
        "POST",
        "/create-link-token",
        json={"accountFilters": {"depository": {"account_subtypes": ["gold bars"]}}},
    ),
    "filters-oversized": Case(
        "POST",
        "/create-link-token",
        json={"accountFilters": {"depository": {"account_subtypes": ["checking"] * 65}}},
    ),
    "exchange-institution-nul": Case(
        "POST", "/exchange-token", json={"publicToken": "p", "institutionId": "ins" + NUL}
    ),
    "exchange-name-nul": Case(
        "POST",
        "/exchange-token",
        json={"publicToken": "p", "institutionName": NUL, "accounts": [{"name": NUL}]},
    ),
    "invalid-utf8": Case("POST", "/exchange-token", content=b'{"publicToken": "\xff\xfe"}'),
    "very-deep-json": Case("POST", "/exchange-token", content=b"[" * 30_000 + b"]" * 30_000),
    "truncated-json": Case("POST", "/exchange-token", content=b'{"publicToken": '),
    # a method the path does not have
    "method-not-allowed": Case("PUT", "/connections", status=405),
}


@pytest.fixture
async def item_id(api: Api) -> str:
    connected = await api.connect()
    return str(connected["itemId"])


@pytest.mark.parametrize("name", list(CASES))
async def test_bad_input_is_a_4xx_in_the_envelope(api: Api, item_id: str, name: str) -> None:
    case = CASES[name]
    headers = {**api.auth(role=case.role), "Content-Type": "application/json"}
    response = await api.client.request(
        case.method,
        case.url(item_id),
        params=case.params or None,
        json=case.json,
        content=case.content,
        headers=headers,
    )

    assert response.status_code == case.status, response.text
    body = response.json()
    assert body["requestId"] == response.headers["x-request-id"]
    assert body["error"]["code"] not in ("INTERNAL_ERROR", None)
    assert body["error"]["message"]
    if case.status == 405:
        assert set(response.headers["allow"].split(", ")) == {"GET"}


async def _post(api: Api, path: str, content: bytes) -> httpx.Response:
    headers = {**api.auth(), "Content-Type": "application/json"}
    return await api.client.post(BASE + path, content=content, headers=headers)


async def test_a_missing_field_is_named(api: Api) -> None:
    response = await _post(api, "/exchange-token", b'{"institutionId": "ins_1"}')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["message"] == "publicToken: field required"


async def test_nested_fields_and_query_parameters_are_named(api: Api) -> None:
    body = b'{"publicToken": "p", "accounts": [{"name": "a\\u0000"}]}'
    nested = await _post(api, "/exchange-token", body)
    query = await api.client.get(f"{BASE}/events?after=x", headers=api.auth())

    assert nested.json()["error"]["message"] == (
        "accounts[0].name: must not contain control characters"
    )
    assert query.json()["error"]["message"].startswith("after: input should be a valid integer")


async def test_bad_json_is_reported_with_its_line_and_column(api: Api) -> None:
    response = await _post(api, "/exchange-token", b'{\n  "publicToken": "p",\n  oops\n}')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == (
        "The body is not valid JSON: Expecting property name enclosed in double quotes"
        " at line 3, column 3."
    )


async def test_bodies_that_cannot_be_decoded_say_why(api: Api) -> None:
    utf8 = await _post(api, "/exchange-token", b'{"publicToken": "\xff"}')
    deep = await _post(api, "/exchange-token", b"[" * 30_000 + b"]" * 30_000)

    assert (utf8.status_code, utf8.json()["error"]["code"]) == (400, "INVALID_BODY")
    assert utf8.json()["error"]["message"] == "The body is not valid UTF-8."
    assert (deep.status_code, deep.json()["error"]["code"]) == (400, "INVALID_BODY")
    assert deep.json()["error"]["message"] == "The body is nested too deeply."


async def test_account_filters_in_plaids_shape_reach_plaid(api: Api) -> None:
    filters = {
        "depository": {"account_subtypes": ["checking", "savings", "checking"]},
        "credit": {"account_subtypes": ["credit card"]},
    }
    response = await api.client.post(
        f"{BASE}/create-link-token",
        json={"accountFilters": filters},
        headers=api.auth(role="MEMBER"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["linkToken"]
