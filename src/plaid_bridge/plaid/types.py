"""The small, immutable types the rest of the service sees instead of SDK models.

Each type is read from Plaid's JSON with every number kept exactly as written (Decimal), so money
is exact. `from_json` raises KeyError, TypeError or ValueError when a field Plaid documents as
required is missing or of the wrong type; the client turns that into `UNEXPECTED_RESPONSE` (and a
body that is not JSON at all, `NotJson`, into `INVALID_RESPONSE`). Objects the API passes through
in Plaid's shape (accounts, transactions) keep it in `raw`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from plaid_bridge.plaid.errors import PlaidErrorClass, classify

__all__ = [
    "Account",
    "Balances",
    "Institution",
    "LinkToken",
    "NotJson",
    "PlaidErrorInfo",
    "PlaidItem",
    "PublicToken",
    "RemovedTransaction",
    "SyncPage",
    "TokenExchange",
    "Transaction",
    "WebhookKey",
    "document",
    "request_id_in",
]

Json = Mapping[str, Any]

# Numbers become Decimal from their text; NaN and Infinity are not JSON and are refused.
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


class NotJson(ValueError):
    """A body that is not a JSON object at all (as opposed to one of the wrong shape)."""


def document(data: bytes | str) -> Json:
    """The JSON object in `data`, numbers exact; NotJson if it is not one."""
    try:
        value = _DECODER.decode(data)
    except ValueError:  # malformed JSON, or a string that is not UTF-8
        raise NotJson("not a JSON document") from None
    if not isinstance(value, dict):
        raise NotJson("not a JSON object")
    return value


class _RequestId(msgspec.Struct):
    request_id: str | None = None


_REQUEST_ID_DECODER = msgspec.json.Decoder(_RequestId)


def request_id_in(data: bytes) -> str | None:
    """Plaid's request id in a body, if it has a readable one (skims the rest unparsed)."""
    try:
        return _REQUEST_ID_DECODER.decode(data).request_id
    except ValueError:
        return None


def _object_json(data: msgspec.Raw) -> Json:
    """A nested value that must be an object (its not being one is a shape error)."""
    try:
        return document(bytes(data))
    except NotJson:
        raise TypeError("expected an object") from None


def _str(obj: Json, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _opt_str(obj: Json, key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string or null")
    return value


def _money(value: object) -> Decimal | None:
    if value is None or type(value) is Decimal:
        return value
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError("amounts must be numbers")
    return Decimal(value)


def _opt_datetime(obj: Json, key: str) -> dt.datetime | None:
    value = _opt_str(obj, key)
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{key} must carry a timezone")
    return parsed


def _str_list(obj: Json, key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{key} must be a list of strings")
    return tuple(value)


def _objects(obj: Json, key: str) -> list[Json]:
    value = obj[key]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise TypeError(f"{key} must be a list of objects")
    return value


def _object(obj: Json, key: str) -> Json | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object")
    return value


@dataclass(frozen=True, slots=True)
class PlaidErrorInfo:
    """An error Plaid reports inside a successful answer (an Item's `error`)."""

    error_type: str
    error_code: str
    error_message: str | None
    display_message: str | None
    error_code_reason: str | None

    @property
    def error_class(self) -> PlaidErrorClass:
        """What the error asks of us, by the same rules as a failed call."""
        return classify(self.error_type, self.error_code)

    @classmethod
    def from_json(cls, obj: Json) -> PlaidErrorInfo:
        return cls(
            error_type=_str(obj, "error_type"),
            error_code=_str(obj, "error_code"),
            error_message=_opt_str(obj, "error_message"),
            display_message=_opt_str(obj, "display_message"),
            error_code_reason=_opt_str(obj, "error_code_reason"),
        )


@dataclass(frozen=True, slots=True)
class LinkToken:
    """A Link token for the front end; it expires (4 hours for new Items at Plaid)."""

    link_token: str
    expiration: dt.datetime
    request_id: str

    @classmethod
    def from_json(cls, obj: Json) -> LinkToken:
        expiration = _opt_datetime(obj, "expiration")
        if expiration is None:
            raise KeyError("expiration")
        return cls(_str(obj, "link_token"), expiration, _str(obj, "request_id"))


@dataclass(frozen=True, slots=True)
class PublicToken:
    """A public token made without Link (sandbox and emulator only)."""

    public_token: str
    request_id: str

    @classmethod
    def from_json(cls, obj: Json) -> PublicToken:
        return cls(_str(obj, "public_token"), _str(obj, "request_id"))


@dataclass(frozen=True, slots=True)
class TokenExchange:
    """The outcome of exchanging a public token: the Item's access token (a secret)."""

    access_token: str
    item_id: str
    request_id: str

    def __repr__(self) -> str:
        return f"TokenExchange(item_id={self.item_id!r}, request_id={self.request_id!r})"

    @classmethod
    def from_json(cls, obj: Json) -> TokenExchange:
        return cls(_str(obj, "access_token"), _str(obj, "item_id"), _str(obj, "request_id"))


@dataclass(frozen=True, slots=True)
class PlaidItem:
    """An Item as `/item/get` (or `/item/webhook/update`) reports it."""

    item_id: str
    institution_id: str | None
    webhook: str | None
    error: PlaidErrorInfo | None
    consent_expiration_time: dt.datetime | None
    available_products: tuple[str, ...]
    billed_products: tuple[str, ...]
    last_successful_update: dt.datetime | None
    request_id: str

    @classmethod
    def from_json(cls, obj: Json) -> PlaidItem:
        item = _object(obj, "item")
        if item is None:
            raise KeyError("item")
        error = _object(item, "error")
        status = _object(obj, "status") or {}
        transactions = _object(status, "transactions") or {}
        return cls(
            item_id=_str(item, "item_id"),
            institution_id=_opt_str(item, "institution_id"),
            webhook=_opt_str(item, "webhook") or None,
            error=None if error is None else PlaidErrorInfo.from_json(error),
            consent_expiration_time=_opt_datetime(item, "consent_expiration_time"),
            available_products=_str_list(item, "available_products"),
            billed_products=_str_list(item, "billed_products"),
            last_successful_update=_opt_datetime(transactions, "last_successful_update"),
            request_id=_str(obj, "request_id"),
        )


@dataclass(frozen=True, slots=True)
class Balances:
    """An account's balances, exact; `limit` is the credit limit where there is one."""

    available: Decimal | None
    current: Decimal | None
    limit: Decimal | None
    iso_currency_code: str | None
    unofficial_currency_code: str | None
    last_updated_datetime: dt.datetime | None

    @classmethod
    def from_json(cls, obj: Json) -> Balances:
        return cls(
            available=_money(obj.get("available")),
            current=_money(obj.get("current")),
            limit=_money(obj.get("limit")),
            iso_currency_code=_opt_str(obj, "iso_currency_code"),
            unofficial_currency_code=_opt_str(obj, "unofficial_currency_code"),
            last_updated_datetime=_opt_datetime(obj, "last_updated_datetime"),
        )


@dataclass(frozen=True, slots=True)
class Account:
    """A Plaid account; `raw` is Plaid's JSON object as Plaid shaped it (numbers as Decimal)."""

    account_id: str
    name: str
    official_name: str | None
    mask: str | None
    type: str
    subtype: str | None
    balances: Balances
    verification_status: str | None
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, obj: Json) -> Account:
        balances = _object(obj, "balances")
        if balances is None:
            raise KeyError("balances")
        return cls(
            account_id=_str(obj, "account_id"),
            name=_str(obj, "name"),
            official_name=_opt_str(obj, "official_name"),
            mask=_opt_str(obj, "mask"),
            type=_str(obj, "type"),
            subtype=_opt_str(obj, "subtype"),
            balances=Balances.from_json(balances),
            verification_status=_opt_str(obj, "verification_status"),
            raw=dict(obj),
        )

    @classmethod
    def list_from_json(cls, obj: Json) -> tuple[Account, ...]:
        """The `accounts` array of an answer."""
        return tuple(cls.from_json(item) for item in _objects(obj, "accounts"))


class _TransactionFields(msgspec.Struct, kw_only=True, frozen=True):
    """The fields of a Plaid transaction the store keeps typed; the rest stay in its raw JSON."""

    transaction_id: str
    account_id: str
    amount: msgspec.Raw
    iso_currency_code: str | None = None
    unofficial_currency_code: str | None = None
    date: dt.date
    authorized_date: dt.date | None = None
    datetime: dt.datetime | None = None
    name: str | None = None
    merchant_name: str | None = None
    pending: bool
    pending_transaction_id: str | None = None
    category: tuple[str, ...] | None = None
    payment_channel: str | None = None


class _Removed(msgspec.Struct, frozen=True):
    transaction_id: str
    account_id: str | None = None


class _SyncBody(msgspec.Struct, kw_only=True, frozen=True):
    added: tuple[msgspec.Raw, ...]
    modified: tuple[msgspec.Raw, ...]
    removed: tuple[_Removed, ...]
    next_cursor: str
    has_more: bool
    request_id: str
    accounts: tuple[msgspec.Raw, ...] = ()
    transactions_update_status: str | None = None


_TRANSACTION_DECODER = msgspec.json.Decoder(_TransactionFields)
_SYNC_DECODER = msgspec.json.Decoder(_SyncBody)


def _number(raw: msgspec.Raw) -> Decimal:
    """A JSON number exactly as written (a string, boolean or null is refused)."""
    text = bytes(raw)
    if not text or text[0] not in b"-0123456789":
        raise TypeError("amounts must be numbers")
    return Decimal(text.decode())


class Transaction(msgspec.Struct, frozen=True, kw_only=True):
    """A Plaid transaction; positive amounts leave the account.

    `raw_json` is Plaid's JSON object as sent (whitespace aside), numbers and all: the store keeps
    it verbatim, so nothing of Plaid's is lost or rounded on the way. (A Struct, not a dataclass:
    a sync builds 500 a page, and a frozen dataclass costs five times as much to build.)
    """

    transaction_id: str
    account_id: str
    amount: Decimal
    iso_currency_code: str | None
    unofficial_currency_code: str | None
    date: dt.date
    authorized_date: dt.date | None
    datetime: dt.datetime | None
    name: str | None
    merchant_name: str | None
    pending: bool
    pending_transaction_id: str | None
    category: tuple[str, ...] | None
    payment_channel: str | None
    raw_json: str

    @property
    def raw(self) -> dict[str, Any]:
        """Plaid's object, numbers as Decimal."""
        return dict(document(self.raw_json.encode()))

    @classmethod
    def from_json(cls, data: bytes) -> Transaction:
        """One transaction object from Plaid's JSON text."""
        return cls._from_compact(msgspec.json.format(data, indent=-1))

    @classmethod
    def _from_compact(cls, data: bytes | msgspec.Raw) -> Transaction:
        """From JSON text without whitespace between tokens (a page's, compacted at once): the
        hot path of a sync, decoded straight into typed fields, no intermediate dict."""
        fields = _TRANSACTION_DECODER.decode(data)
        moment = fields.datetime
        if moment is not None and moment.tzinfo is None:
            raise ValueError("datetime must carry a timezone")
        return cls(
            transaction_id=fields.transaction_id,
            account_id=fields.account_id,
            amount=_number(fields.amount),
            iso_currency_code=fields.iso_currency_code,
            unofficial_currency_code=fields.unofficial_currency_code,
            date=fields.date,
            authorized_date=fields.authorized_date,
            datetime=moment,
            name=fields.name,
            merchant_name=fields.merchant_name,
            pending=fields.pending,
            pending_transaction_id=fields.pending_transaction_id,
            category=fields.category,
            payment_channel=fields.payment_channel,
            raw_json=bytes(data).decode(),
        )


@dataclass(frozen=True, slots=True)
class RemovedTransaction:
    """A transaction Plaid no longer reports (including a pending one that posted)."""

    transaction_id: str
    account_id: str | None


@dataclass(frozen=True, slots=True)
class SyncPage:
    """One `/transactions/sync` page. Empty with `next_cursor == ""` means not ready yet."""

    added: tuple[Transaction, ...]
    modified: tuple[Transaction, ...]
    removed: tuple[RemovedTransaction, ...]
    next_cursor: str
    has_more: bool
    accounts: tuple[Account, ...]
    transactions_update_status: str | None
    request_id: str

    @property
    def not_ready(self) -> bool:
        """True for Plaid's "no data yet" answer, which must not be stored as progress."""
        return not self.next_cursor and not (self.added or self.modified or self.removed)

    @classmethod
    def from_json(cls, data: bytes) -> SyncPage:
        """A page from the response body; NotJson if the body is not JSON at all."""
        try:
            # Whitespace goes once for the whole page; each transaction's text is then kept as is.
            body = _SYNC_DECODER.decode(msgspec.json.format(data, indent=-1))
        except msgspec.ValidationError:
            raise
        except msgspec.DecodeError:
            raise NotJson("not a JSON document") from None
        read = Transaction._from_compact
        return cls(
            added=tuple(read(item) for item in body.added),
            modified=tuple(read(item) for item in body.modified),
            removed=tuple(RemovedTransaction(r.transaction_id, r.account_id) for r in body.removed),
            next_cursor=body.next_cursor,
            has_more=body.has_more,
            accounts=tuple(Account.from_json(_object_json(item)) for item in body.accounts),
            transactions_update_status=body.transactions_update_status,
            request_id=body.request_id,
        )


@dataclass(frozen=True, slots=True)
class Institution:
    """A bank as `/institutions/get_by_id` describes it."""

    institution_id: str
    name: str
    country_codes: tuple[str, ...]
    products: tuple[str, ...]
    oauth: bool | None
    url: str | None
    request_id: str

    @classmethod
    def from_json(cls, obj: Json) -> Institution:
        institution = _object(obj, "institution")
        if institution is None:
            raise KeyError("institution")
        oauth = institution.get("oauth")
        return cls(
            institution_id=_str(institution, "institution_id"),
            name=_str(institution, "name"),
            country_codes=_str_list(institution, "country_codes"),
            products=_str_list(institution, "products"),
            oauth=oauth if isinstance(oauth, bool) else None,
            url=_opt_str(institution, "url"),
            request_id=_str(obj, "request_id"),
        )


@dataclass(frozen=True, slots=True)
class WebhookKey:
    """A webhook verification key (an EC P-256 JWK). `expired_at` set means rotated out."""

    kid: str
    alg: str
    crv: str
    kty: str
    use: str
    x: str
    y: str
    created_at: int
    expired_at: int | None
    request_id: str

    @property
    def jwk(self) -> dict[str, str]:
        """The public key as a JWK dict, for a JOSE library."""
        return {
            "kid": self.kid,
            "alg": self.alg,
            "crv": self.crv,
            "kty": self.kty,
            "use": self.use,
            "x": self.x,
            "y": self.y,
        }

    @classmethod
    def from_json(cls, obj: Json) -> WebhookKey:
        key = _object(obj, "key")
        if key is None:
            raise KeyError("key")
        created_at, expired_at = key["created_at"], key.get("expired_at")
        if isinstance(created_at, bool) or not isinstance(created_at, int):
            raise TypeError("created_at must be an integer")
        if expired_at is not None and (
            isinstance(expired_at, bool) or not isinstance(expired_at, int)
        ):
            raise TypeError("expired_at must be an integer or null")
        return cls(
            kid=_str(key, "kid"),
            alg=_str(key, "alg"),
            crv=_str(key, "crv"),
            kty=_str(key, "kty"),
            use=_str(key, "use"),
            x=_str(key, "x"),
            y=_str(key, "y"),
            created_at=created_at,
            expired_at=expired_at,
            request_id=_str(obj, "request_id"),
        )
