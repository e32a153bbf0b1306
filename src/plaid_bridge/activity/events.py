"""Platform notifications (`GET /events`), emitted in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Index, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from plaid_bridge.db import Base, BigId, utcnow

NOTIFICATION_THROTTLE = timedelta(hours=24)


class Event(Base):
    __tablename__ = "plaid_events"
    __table_args__ = (Index(None, "org_id", "id"), Index(None, "item_id", "type", "created_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(128))
    item_id: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def emit(
    session: AsyncSession,
    *,
    org_id: str,
    type: str,
    item_id: str | None = None,
    data: dict[str, Any] | None = None,
    throttle: bool = False,
) -> Event | None:
    """Add an event; with `throttle`, skip it if the same one was emitted for the item in 24 h."""
    if throttle and item_id is not None:
        since = utcnow() - NOTIFICATION_THROTTLE
        recent = await session.scalar(
            select(Event.id)
            .where(Event.item_id == item_id, Event.type == type, Event.created_at > since)
            .limit(1)
        )
        if recent is not None:
            return None
    event = Event(org_id=org_id, item_id=item_id, type=type, data=data or {})
    session.add(event)
    return event
