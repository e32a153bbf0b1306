"""Read-only feeds of the org: platform events and the audit log, keyset-paginated by id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from plaid_bridge.audit import AuditLog
from plaid_bridge.connections.schemas import CamelModel
from plaid_bridge.dependencies import Admin, SessionDep, Viewer
from plaid_bridge.events import Event

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


@router.get("/events", response_model=EventPage)
async def list_events(
    caller: Viewer,
    session: SessionDep,
    after: int = Query(default=0, ge=0),
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
        events=[
            EventOut(
                id=row.id,
                type=row.type,
                item_id=row.item_id,
                created_at=row.created_at,
                data=row.data,
            )
            for row in rows
        ],
        next_after=rows[-1].id if len(rows) == limit else None,
    )


@router.get("/audit", response_model=AuditPage)
async def list_audit(
    caller: Admin,
    session: SessionDep,
    item_id: str | None = Query(default=None, alias="itemId", max_length=128),
    after: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=500),
) -> AuditPage:
    """Audit entries of the org, oldest first, after the given id."""
    query = select(AuditLog).where(AuditLog.org_id == caller.org_id, AuditLog.id > after)
    if item_id is not None:
        query = query.where(AuditLog.item_id == item_id)
    rows = (await session.scalars(query.order_by(AuditLog.id).limit(limit))).all()
    return AuditPage(
        entries=[
            AuditEntry(
                id=row.id,
                action=row.action,
                outcome=row.outcome,
                user_id=row.user_id,
                item_id=row.item_id,
                request_id=row.request_id,
                plaid_request_id=row.plaid_request_id,
                ip=row.ip,
                error_code=row.error_code,
                details=row.details,
                created_at=row.created_at,
            )
            for row in rows
        ],
        next_after=rows[-1].id if len(rows) == limit else None,
    )
