"""The audit log: every action and its outcome, written in the same transaction as the change."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Index, String, Text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from plaid_bridge.db import Base, BigId, utcnow
from plaid_bridge.redaction import redact

if TYPE_CHECKING:
    from plaid_bridge.security.caller import Caller


@dataclass(slots=True)
class PendingAction:
    """The action a request is attempting; recorded as a FAILURE if the request fails."""

    org_id: str
    action: str
    user_id: str | None
    item_id: str | None
    request_id: str | None
    ip: str | None


# Set per request by the request-context middleware (a mutable holder, so a value set deep in a
# service is visible to the error handler that runs after the request's transaction rolled back).
pending_action: ContextVar[list[PendingAction] | None] = ContextVar("pending_action", default=None)


class AuditLog(Base):
    __tablename__ = "plaid_audit_logs"
    __table_args__ = (Index(None, "org_id", "id"), Index(None, "item_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(128))
    plaid_request_id: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]]
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def record(
    session: AsyncSession,
    *,
    org_id: str,
    action: str,
    user_id: str | None = None,
    item_id: str | None = None,
    success: bool = True,
    request_id: str | None = None,
    plaid_request_id: str | None = None,
    ip: str | None = None,
    error_code: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit row to the session (flushed with the caller's transaction; never commits)."""
    entry = AuditLog(
        org_id=org_id,
        user_id=user_id,
        action=action,
        item_id=item_id,
        outcome="SUCCESS" if success else "FAILURE",
        request_id=request_id,
        plaid_request_id=plaid_request_id,
        ip=ip,
        error_code=error_code,
        details=redact(details or {}),
    )
    session.add(entry)
    return entry


def begin(
    *,
    org_id: str,
    action: str,
    user_id: str | None,
    item_id: str | None = None,
    request_id: str | None = None,
    ip: str | None = None,
) -> None:
    """Declare the action this request attempts, so a failure of it is audited too."""
    holder = pending_action.get()
    if holder is not None:
        holder[:] = [PendingAction(org_id, action, user_id, item_id, request_id, ip)]


def take_pending() -> PendingAction | None:
    """The declared action, cleared (the error handler records it once)."""
    holder = pending_action.get()
    if not holder:
        return None
    return holder.pop()


async def record_failure(
    session: AsyncSession,
    action: PendingAction,
    *,
    error_code: str,
    plaid_request_id: str | None = None,
) -> None:
    """Audit a failed action in its own transaction (the request's own was rolled back)."""
    await record(
        session,
        org_id=action.org_id,
        action=action.action,
        user_id=action.user_id,
        item_id=action.item_id,
        success=False,
        request_id=action.request_id,
        plaid_request_id=plaid_request_id,
        ip=action.ip,
        error_code=error_code,
    )


def begin_for(caller: Caller, action: str, item_id: str | None = None) -> None:
    """`begin` for the authenticated caller of the current request."""
    begin(
        org_id=caller.org_id,
        action=action,
        user_id=caller.user_id,
        item_id=item_id,
        request_id=caller.request_id,
        ip=caller.ip,
    )


async def record_for(
    session: AsyncSession,
    caller: Caller,
    action: str,
    *,
    item_id: str | None = None,
    plaid_request_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """`record` a successful action of the authenticated caller of the current request."""
    return await record(
        session,
        org_id=caller.org_id,
        action=action,
        user_id=caller.user_id,
        item_id=item_id,
        request_id=caller.request_id,
        plaid_request_id=plaid_request_id,
        ip=caller.ip,
        details=details,
    )
