"""Reading Plaid's JSON into our types: exact money, Plaid's shape kept in `raw`."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from plaid_bridge.plaid import (
    Account,
    LinkToken,
    PlaidErrorClass,
    PlaidItem,
    SyncPage,
    Transaction,
    WebhookKey,
)
from plaid_bridge.plaid.types import NotJson, document


def load(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return parsed


def transaction_json(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": "tx-1",
        "account_id": "acc-1",
        "amount": 0.1,
        "iso_currency_code": "USD",
        "unofficial_currency_code": None,
        "date": "2024-03-01",
        "authorized_date": "2024-02-29",
        "datetime": "2024-03-01T10:15:00Z",
        "name": "Coffee",
        "merchant_name": "Cafe",
        "pending": False,
        "pending_transaction_id": "tx-0",
        "category": ["Food and Drink", "Coffee"],
        "payment_channel": "in store",
        "personal_finance_category": {"primary": "FOOD_AND_DRINK", "detailed": "COFFEE"},
    }
    body.update(overrides)
    return body


def account_json() -> dict[str, Any]:
    return {
        "account_id": "acc-1",
        "name": "Checking",
        "official_name": None,
        "mask": "0000",
        "type": "depository",
        "subtype": "checking",
        "balances": {
            "available": 100.1,
            "current": 110.2,
            "limit": None,
            "iso_currency_code": "USD",
            "unofficial_currency_code": None,
        },
    }


def encoded(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, indent=2).encode()


def test_amounts_are_read_from_their_text_exactly() -> None:
    data = encoded(transaction_json()).replace(b"0.1", b"0.10000000000000000001")
    transaction = Transaction.from_json(data)
    assert transaction.amount == Decimal("0.10000000000000000001")
    assert transaction.raw["amount"] == Decimal("0.10000000000000000001")
    assert '"amount":0.10000000000000000001,' in transaction.raw_json
    assert Transaction.from_json(encoded(transaction_json(amount=-12))).amount == -12
    assert Transaction.from_json(encoded(transaction_json(amount=1e-7))).amount == Decimal("1e-7")


def test_a_transaction_keeps_plaids_fields_and_shape() -> None:
    transaction = Transaction.from_json(encoded(transaction_json()))
    assert transaction.date == dt.date(2024, 3, 1)
    assert transaction.authorized_date == dt.date(2024, 2, 29)
    assert transaction.datetime == dt.datetime(2024, 3, 1, 10, 15, tzinfo=dt.UTC)
    assert transaction.category == ("Food and Drink", "Coffee")
    assert transaction.pending_transaction_id == "tx-0"
    assert transaction.raw["personal_finance_category"]["detailed"] == "COFFEE"
    assert transaction.raw == load(json.dumps(transaction_json()))
    # Plaid's object as sent, without the whitespace between tokens.
    assert transaction.raw_json == json.dumps(transaction_json(), separators=(",", ":"))


@pytest.mark.parametrize(
    "broken",
    [
        {"transaction_id": None},
        {"amount": "12.00"},
        {"amount": True},
        {"amount": None},
        {"date": "yesterday"},
        {"pending": "no"},
        {"pending": 0},
        {"datetime": "2024-03-01T10:15:00"},
        {"category": "Coffee"},
    ],
)
def test_a_transaction_not_shaped_as_plaid_documents_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        Transaction.from_json(encoded(transaction_json(**broken)))


def test_json_that_is_not_an_object_is_told_apart_from_a_wrong_shape() -> None:
    for body in (b"[1, 2]", b"{", b'{"amount": NaN}', b"\xff"):
        with pytest.raises(NotJson):
            document(body)
    with pytest.raises(NotJson):
        SyncPage.from_json(b"{")
    with pytest.raises(ValueError, match="Expected `array`") as shape:
        SyncPage.from_json(b'{"added": 1}')
    assert not isinstance(shape.value, NotJson)


def test_an_account_keeps_plaids_object() -> None:
    account = Account.from_json(load(json.dumps(account_json())))
    assert account.balances.available == Decimal("100.1")
    assert account.balances.limit is None
    assert account.raw["balances"]["current"] == Decimal("110.2")
    assert account.raw == load(json.dumps(account_json()))


def test_a_sync_page_and_its_not_ready_form() -> None:
    body = json.dumps(
        {
            "added": [transaction_json()],
            "modified": [],
            "removed": [{"transaction_id": "tx-0", "account_id": "acc-1"}],
            "next_cursor": "c1",
            "has_more": True,
            "accounts": [account_json()],
            "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE",
            "request_id": "r",
        }
    )
    page = SyncPage.from_json(body.encode())
    assert (len(page.added), page.removed[0].transaction_id, page.has_more) == (1, "tx-0", True)
    assert not page.not_ready
    empty = SyncPage.from_json(
        encoded(
            {
                "added": [],
                "modified": [],
                "removed": [],
                "next_cursor": "",
                "has_more": False,
                "accounts": [],
                "transactions_update_status": "NOT_READY",
                "request_id": "r",
            }
        )
    )
    assert empty.not_ready


def test_an_item_with_an_error() -> None:
    item = PlaidItem.from_json(
        {
            "item": {
                "item_id": "item-1",
                "institution_id": "ins_1",
                "webhook": "",
                "error": {
                    "error_type": "ITEM_ERROR",
                    "error_code": "ITEM_LOGIN_REQUIRED",
                    "error_message": "login required",
                    "display_message": None,
                },
                "available_products": ["balance"],
                "billed_products": ["transactions"],
                "consent_expiration_time": None,
            },
            "status": {"transactions": {"last_successful_update": "2024-03-01T00:00:00Z"}},
            "request_id": "r",
        }
    )
    assert item.error is not None
    assert item.error.error_class is PlaidErrorClass.NEEDS_USER
    assert item.webhook is None
    assert item.billed_products == ("transactions",)
    assert item.last_successful_update == dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def test_link_token_and_webhook_key() -> None:
    token = LinkToken.from_json(
        {"link_token": "link-1", "expiration": "2024-03-01T04:00:00Z", "request_id": "r"}
    )
    assert token.expiration.tzinfo is not None
    key = WebhookKey.from_json(
        {
            "key": {
                "alg": "ES256",
                "crv": "P-256",
                "kid": "k1",
                "kty": "EC",
                "use": "sig",
                "x": "xx",
                "y": "yy",
                "created_at": 1560466150,
                "expired_at": None,
            },
            "request_id": "r",
        }
    )
    assert key.jwk == {
        "alg": "ES256",
        "crv": "P-256",
        "kid": "k1",
        "kty": "EC",
        "use": "sig",
        "x": "xx",
        "y": "yy",
    }
    assert key.expired_at is None
