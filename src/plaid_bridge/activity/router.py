"""Read-only feeds of the org: platform events and the audit log, keyset-paginated by id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from plaid_bridge.activity.audit import AuditLog
from plaid_bridge.activity.events import Event
from plaid_bridge.api.openapi import answers
from plaid_bridge.api.params import AfterId, ItemIdQuery
from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.dependencies import Admin, SessionDep, Viewer

router = APIRouter(tags=["feeds"])


class EventOut(CamelModel):
    id: int
    type: str
    item_id: str | None
    created_at: datetime
    data: dict[str, Any]


class EventPage(CamelModel):
    events: list[EventOut]
    next_after: int | None


class AuditEntry(CamelModel):
    id: int
    action: str
    outcome: str
    user_id: str | None
    item_id: str | None
    request_id: str | None
    plaid_request_id: str | None
    ip: str | None
    error_code: str | None
    details: dict[str, Any]
    created_at: datetime


class AuditPage(CamelModel):
    entries: list[AuditEntry]
    next_after: int | None


def _next_after(rows: Sequence[Event] | Sequence[AuditLog], limit: int) -> int | None:
    """The keyset cursor of the next page; None once a page comes back short."""
    return rows[-1].id if len(rows) == limit else None


@router.get("/events", response_model=EventPage, responses=answers(400))
async def list_events(
    caller: Viewer,
    session: SessionDep,
    after: AfterId = 0,
    limit: int = Query(default=100, ge=1, le=500),
) -> EventPage:
    """Platform notifications of the org, oldest first, after the given id."""
    rows = (
        await session.scalars(
            select(Event)
            .where(Event.org_id == caller.org_id, Event.id > after)
            .order_by(Event.id)
            .limit(limit)
        )
    ).all()
    return EventPage(
        events=[EventOut.model_validate(row, from_attributes=True) for row in rows],
        next_after=_next_after(rows, limit),
    )


@router.get("/audit", response_model=AuditPage, responses=answers(400, 403))
async def list_audit(
    caller: Admin,
    session: SessionDep,
    item_id: ItemIdQuery = None,
    after: AfterId = 0,
    limit: int = Query(default=100, ge=1, le=500),
) -> AuditPage:
    """Audit entries of the org, oldest first, after the given id."""
    query = select(AuditLog).where(AuditLog.org_id == caller.org_id, AuditLog.id > after)
    if item_id is not None:
        query = query.where(AuditLog.item_id == item_id)
    rows = (await session.scalars(query.order_by(AuditLog.id).limit(limit))).all()
    return AuditPage(
        entries=[AuditEntry.model_validate(row, from_attributes=True) for row in rows],
        next_after=_next_after(rows, limit),
    )
