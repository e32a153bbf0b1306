"""The local transaction store, with a change sequence that serves the service's own feed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from plaid_bridge.db import Base, BigId, utcnow


class PlaidTransaction(Base):
    """A Plaid transaction; soft-removed so the change feed can report the removal.

    `change_seq` is the connection's sequence number of the sync that last touched the row and
    `created_seq` the one that first stored it: the feed walks rows new to a client by
    `created_seq` and rows it holds by `change_seq`. A held row has changed since it was created
    (`change_seq > created_seq`), so only such rows are in the change index: the rows a first
    sync stores, the bulk of all rows, are written to one index fewer.
    """

    __tablename__ = "plaid_transactions"
    __table_args__ = (
        Index(
            "ix_plaid_transactions_changed",
            "connection_id",
            "change_seq",
            "transaction_id",
            postgresql_where=text("change_seq > created_seq"),
            sqlite_where=text("change_seq > created_seq"),
        ),
        Index(None, "connection_id", "created_seq", "transaction_id"),
        Index(None, "connection_id", "date", "id"),
        Index(None, "account_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("plaid_connections.id", ondelete="CASCADE")
    )
    transaction_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[str] = mapped_column(String(128))
    amount: Mapped[Decimal] = mapped_column(Numeric(24, 6))
    iso_currency_code: Mapped[str | None] = mapped_column(String(8))
    unofficial_currency_code: Mapped[str | None] = mapped_column(String(16))
    date: Mapped[dt.date] = mapped_column(Date)
    authorized_date: Mapped[dt.date | None] = mapped_column(Date)
    datetime: Mapped[dt.datetime | None]
    name: Mapped[str | None] = mapped_column(String(512))
    merchant_name: Mapped[str | None] = mapped_column(String(512))
    pending: Mapped[bool] = mapped_column(Boolean)
    pending_transaction_id: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[list[Any] | None]
    payment_channel: Mapped[str | None] = mapped_column(String(32))
    # Plaid's JSON object as sent, kept as text: the service checked it on the way in (a json
    # column would have the server parse it again for every row), and it is served unparsed.
    raw: Mapped[str] = mapped_column(Text)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    change_seq: Mapped[int] = mapped_column(BigInteger)
    created_seq: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
