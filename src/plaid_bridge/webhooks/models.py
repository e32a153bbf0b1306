"""The durable webhook inbox: every verified delivery, exactly as received, until processed."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plaid_bridge.db import Base, BigId, utcnow


class InboxStatus(enum.StrEnum):
    PENDING = "PENDING"  # waiting for a worker (or its claim's lease ran out)
    PROCESSING = "PROCESSING"  # claimed by `claimed_by` until `claimed_until`
    DONE = "DONE"
    FAILED = "FAILED"  # gave up after the maximum attempts; replayable


class WebhookEvent(Base):
    __tablename__ = "plaid_webhook_events"
    __table_args__ = (
        Index(None, "status", "id"),
        Index(None, "item_id", "id"),
        Index(None, "token_sha256", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_type: Mapped[str | None] = mapped_column(String(64))
    webhook_code: Mapped[str | None] = mapped_column(String(64))
    item_id: Mapped[str | None] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    # The verified `Plaid-Verification` token (SHA-256 of its signed part): unique, so a replay
    # of an accepted delivery is never stored twice, whichever replica receives it. None when
    # verification is off.
    token_sha256: Mapped[str | None] = mapped_column(String(64))
    # The token's `iat`: when Plaid signed this delivery (None when verification is off).
    signed_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
