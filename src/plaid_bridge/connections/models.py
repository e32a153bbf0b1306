"""Tables of connections (one per Plaid Item) and their accounts."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from plaid_bridge.db import Base, utcnow

Money = Numeric(24, 6)


class ConnectionStatus(enum.StrEnum):
    """Lifecycle of a connection (SPEC section 6)."""

    ACTIVE = "ACTIVE"
    LOGIN_REQUIRED = "LOGIN_REQUIRED"
    PENDING_EXPIRATION = "PENDING_EXPIRATION"
    ERROR = "ERROR"
    REVOKED = "REVOKED"
    REMOVED = "REMOVED"


LIVE_STATUSES = frozenset(set(ConnectionStatus) - {ConnectionStatus.REMOVED})


def new_id() -> str:
    return str(uuid.uuid4())


class PlaidConnection(Base):
    """One Plaid Item of one org; the access token is stored only encrypted."""

    __tablename__ = "plaid_connections"
    __table_args__ = (Index(None, "org_id", "user_id", "institution_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(128), index=True)
    user_id: Mapped[str] = mapped_column(String(128))
    item_id: Mapped[str] = mapped_column(String(128), unique=True)
    access_token_encrypted: Mapped[str | None] = mapped_column(Text)
    institution_id: Mapped[str | None] = mapped_column(String(64))
    institution_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default=ConnectionStatus.ACTIVE.value)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    cursor: Mapped[str | None] = mapped_column(Text)
    consent_expires_at: Mapped[datetime | None]
    new_accounts_available: Mapped[bool] = mapped_column(Boolean, default=False)
    initial_update_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    historical_update_complete: Mapped[bool] = mapped_column(Boolean, default=False)
    last_synced_at: Mapped[datetime | None]
    # When `status` (or its error) last changed: a webhook signed before it describes an older
    # state and must not undo the change (webhooks/handlers.py).
    status_changed_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    # Sequence of the last sync applied; the change feed's cursors count in it.
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    removed_at: Mapped[datetime | None]

    accounts: Mapped[list[PlaidAccount]] = relationship(
        back_populates="connection", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def live(self) -> bool:
        return self.status != ConnectionStatus.REMOVED


class PlaidAccount(Base):
    """An account of an Item: typed columns for queries, `raw` as Plaid shaped it for the API."""

    __tablename__ = "plaid_accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("plaid_connections.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    official_name: Mapped[str | None] = mapped_column(String(255))
    mask: Mapped[str | None] = mapped_column(String(16))
    type: Mapped[str] = mapped_column(String(32))
    subtype: Mapped[str | None] = mapped_column(String(64))
    balance_available: Mapped[Decimal | None] = mapped_column(Money)
    balance_current: Mapped[Decimal | None] = mapped_column(Money)
    balance_limit: Mapped[Decimal | None] = mapped_column(Money)
    iso_currency_code: Mapped[str | None] = mapped_column(String(8))
    unofficial_currency_code: Mapped[str | None] = mapped_column(String(16))
    verification_status: Mapped[str | None] = mapped_column(String(64))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    raw: Mapped[dict[str, Any]]
    balances_updated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connection: Mapped[PlaidConnection] = relationship(back_populates="accounts")


class ItemRemoval(Base):
    """An Item removed here whose removal at Plaid is not confirmed yet (`connections/removal.py`).

    Written in the transaction that marks the connection REMOVED and erases its token, so the
    removal at Plaid is owed durably before Plaid is asked; deleted once Plaid confirms (or says
    the Item is already gone). It holds the last copy of the access token, encrypted like the
    connection's was. `not_before` is both the retry backoff and the lease of whoever is trying.
    """

    __tablename__ = "plaid_item_removals"
    __table_args__ = (Index(None, "not_before"),)

    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    access_token_encrypted: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(64))
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
