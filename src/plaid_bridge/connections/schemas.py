"""JSON shapes of the connection endpoints (camelCase; Plaid objects pass through snake_case)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from plaid_bridge.api.schemas import CamelModel


class LinkTokenRequest(CamelModel):
    language: str | None = Field(default=None, max_length=8)
    country_codes: list[str] | None = Field(default=None, max_length=20)
    products: list[str] | None = Field(default=None, max_length=20)
    account_filters: dict[str, Any] | None = None
    user_id: str | None = Field(default=None, max_length=128)
    webhook_url: str | None = Field(default=None, max_length=2048)
    redirect_uri: str | None = Field(default=None, max_length=2048)
    client_name: str | None = Field(default=None, max_length=128)


class LinkTokenResponse(CamelModel):
    link_token: str
    expiration: datetime
    request_id: str | None = None


class SelectedAccount(CamelModel):
    id: str | None = Field(default=None, max_length=128)
    name: str = Field(max_length=255)
    mask: str | None = Field(default=None, max_length=16)


class ExchangeRequest(CamelModel):
    public_token: str = Field(min_length=1, max_length=512)
    institution_id: str | None = Field(default=None, max_length=64)
    institution_name: str | None = Field(default=None, max_length=255)
    accounts: list[SelectedAccount] | None = Field(default=None, max_length=100)
    allow_duplicate: bool = False
    user_id: str | None = Field(default=None, max_length=128)


class ExchangeResponse(CamelModel):
    item_id: str
    institution_id: str | None
    institution_name: str | None
    status: str
    accounts: list[dict[str, Any]]


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
