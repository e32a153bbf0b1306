"""JSON of the transaction endpoints, written by hand so that amounts stay exact.

Transactions are Plaid-shaped (snake_case), from the stored raw object with the amount taken from
its exact NUMERIC column and written as a JSON number digit for digit (never through a float).
The pydantic models here only document the shapes in OpenAPI.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from plaid_bridge.api.schemas import CamelModel


def _plain(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_encode = json.JSONEncoder(separators=(",", ":"), default=_plain).encode


def exact_number(value: Decimal) -> str:
    """`value` as a JSON number with every digit and no exponent (`0.300000` -> `0.3`)."""
    text = format(value.normalize(), "f")
    return "0" if text == "-0" else text


def transaction_json(raw: Mapping[str, Any], amount: Decimal) -> str:
    """One Plaid transaction object whose `amount` is exactly `amount`."""
    rest = _encode({key: value for key, value in raw.items() if key != "amount"})
    head = '{"amount":' + exact_number(amount)
    return head + ("}" if rest == "{}" else "," + rest[1:])


def _array(items: Iterable[str]) -> str:
    return "[" + ",".join(items) + "]"


def feed_json(
    *,
    added: Iterable[str],
    modified: Iterable[str],
    removed: list[dict[str, str]],
    next_cursor: str,
    has_more: bool,
) -> str:
    """The body of `GET /transactions/{itemId}/sync` from rendered transactions."""
    return (
        '{"transactions":'
        + _array(added)
        + ',"modified":'
        + _array(modified)
        + ',"removed":'
        + _encode(removed)
        + ',"nextCursor":'
        + _encode(next_cursor)
        + ',"hasMore":'
        + ("true" if has_more else "false")
        + "}"
    )


def list_json(transactions: Iterable[str], next_after: str | None) -> str:
    """The body of `GET /transactions` from rendered transactions."""
    return '{"transactions":' + _array(transactions) + ',"nextAfter":' + _encode(next_after) + "}"


class PlaidTransactionOut(BaseModel):
    """A Plaid transaction as Plaid shapes it (snake_case), `amount` exact; every field Plaid sent
    is kept, the model names those clients rely on."""

    model_config = ConfigDict(extra="allow")
    transaction_id: str
    account_id: str
    amount: float = Field(description="Positive for money out, as Plaid signs it; exact digits.")
    iso_currency_code: str | None = None
    unofficial_currency_code: str | None = None
    date: dt.date
    authorized_date: dt.date | None = None
    name: str | None = None
    merchant_name: str | None = None
    pending: bool
    pending_transaction_id: str | None = None
    payment_channel: str | None = None


class RemovedTransactionOut(BaseModel):
    transaction_id: str
    account_id: str


class FeedPageOut(CamelModel):
    """Documentation of the feed page (transactions are Plaid objects, snake_case)."""

    transactions: list[PlaidTransactionOut]
    modified: list[PlaidTransactionOut]
    removed: list[RemovedTransactionOut]
    next_cursor: str
    has_more: bool


class TransactionPageOut(CamelModel):
    """Documentation of a page of `GET /transactions`, newest first."""

    transactions: list[PlaidTransactionOut]
    next_after: str | None
