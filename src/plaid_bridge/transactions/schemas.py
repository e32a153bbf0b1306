"""JSON of the transaction endpoints, written by hand from the stored text of each transaction.

Transactions are Plaid-shaped (snake_case): the store keeps each one's JSON as Plaid sent it (the
`raw` column, checked once on the way in), so a response splices those texts in as they are,
neither parsed nor re-encoded: amounts keep Plaid's digits (never through a float), and the cost
of a page is one join of strings. The pydantic models here only document the shapes in OpenAPI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from plaid_bridge.api.schemas import CamelModel

_encode = msgspec.json.encode


def _array(items: Iterable[str]) -> bytes:
    return b"[" + ",".join(items).encode() + b"]"


def feed_json(
    *,
    added: Iterable[str],
    modified: Iterable[str],
    removed: list[dict[str, str]],
    next_cursor: str,
    has_more: bool,
) -> bytes:
    """The body of `GET /transactions/{itemId}/sync` from stored transaction texts."""
    return b"".join(
        (
            b'{"transactions":',
            _array(added),
            b',"modified":',
            _array(modified),
            b',"removed":',
            _encode(removed),
            b',"nextCursor":',
            _encode(next_cursor),
            b',"hasMore":',
            b"true" if has_more else b"false",
            b"}",
        )
    )


def list_json(transactions: Iterable[str], next_after: str | None) -> bytes:
    """The body of `GET /transactions` from stored transaction texts."""
    body = (b'{"transactions":', _array(transactions), b',"nextAfter":', _encode(next_after), b"}")
    return b"".join(body)


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
