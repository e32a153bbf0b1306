"""Sync requests (the coalesced queue, one row per Item) and the record of every sync run."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from plaid_bridge.db import Base, BigId, utcnow


class SyncRequestState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"


class SyncRequest(Base):
    """At most one per Item: requests for a queued Item coalesce; one for a running Item sets
    `rerun`, so exactly one more pass follows the current one."""

    __tablename__ = "plaid_sync_requests"
    __table_args__ = (Index(None, "state", "not_before"),)

    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=SyncRequestState.QUEUED.value)
    rerun: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None]
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)


class SyncRun(Base):
    """One pass of the sync engine over one Item, whatever its outcome."""

    __tablename__ = "plaid_sync_runs"
    __table_args__ = (Index(None, "item_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    modified: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    plaid_request_ids: Mapped[list[Any]]
    error_code: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
