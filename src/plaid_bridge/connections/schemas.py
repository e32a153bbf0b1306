"""JSON shapes of the connection endpoints (camelCase; Plaid objects pass through snake_case)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from plaid_bridge.api.schemas import NO_CONTROL_CHARACTERS, CamelModel
from plaid_bridge.connections.account_filters import AccountFilters


def _text(max_length: int, min_length: int = 0) -> object:
    """A printable string of bounded length (no NUL or other control characters)."""
    return Field(min_length=min_length, max_length=max_length, pattern=NO_CONTROL_CHARACTERS)


class LinkTokenRequest(CamelModel):
    language: Annotated[str, _text(8)] | None = None
    country_codes: list[Annotated[str, _text(8)]] | None = Field(default=None, max_length=20)
    products: list[Annotated[str, _text(64)]] | None = Field(default=None, max_length=20)
    account_filters: AccountFilters | None = Field(
        default=None,
        description="Plaid's `account_filters` (snake_case, as Plaid defines it).",
    )
    user_id: Annotated[str, _text(128)] | None = None
    webhook_url: Annotated[str, _text(2048)] | None = None
    redirect_uri: Annotated[str, _text(2048)] | None = None
    client_name: Annotated[str, _text(128)] | None = None


class LinkTokenResponse(CamelModel):
    link_token: str
    expiration: datetime
    request_id: str | None = None


class SelectedAccount(CamelModel):
    id: Annotated[str, _text(128)] | None = None
    name: Annotated[str, _text(255)]
    mask: Annotated[str, _text(16)] | None = None


class ExchangeRequest(CamelModel):
    public_token: Annotated[str, _text(512, 1)]
    institution_id: Annotated[str, _text(64)] | None = None
    institution_name: Annotated[str, _text(255)] | None = None
    accounts: list[SelectedAccount] | None = Field(default=None, max_length=100)
    allow_duplicate: bool = False
    user_id: Annotated[str, _text(128)] | None = None


# Plaid objects pass through as Plaid shapes them: snake_case, with every field Plaid sent (the
# models name the ones clients rely on; numbers keep their JSON type, int or float).
_PLAID_OBJECT = ConfigDict(extra="allow")


class PlaidBalancesOut(BaseModel):
    model_config = _PLAID_OBJECT
    available: int | float | None = None
    current: int | float | None = None
    limit: int | float | None = None
    iso_currency_code: str | None = None
    unofficial_currency_code: str | None = None


class PlaidAccountOut(BaseModel):
    """A Plaid account object (`/accounts/get`), with its balances."""

    model_config = _PLAID_OBJECT
    account_id: str
    name: str
    official_name: str | None = None
    mask: str | None = None
    type: str
    subtype: str | None = None
    balances: PlaidBalancesOut
    verification_status: str | None = None


class ExchangeResponse(CamelModel):
    item_id: str
    institution_id: str | None
    institution_name: str | None
    status: str
    accounts: list[PlaidAccountOut]


class ConnectionProblem(CamelModel):
    code: str
    message: str | None


class ConnectionOut(CamelModel):
    item_id: str
    institution_id: str | None
    institution_name: str | None
    status: str
    last_synced_at: datetime | None
    created_at: datetime
    error: ConnectionProblem | None = None
    consent_expires_at: datetime | None = None
    new_accounts_available: bool = False
