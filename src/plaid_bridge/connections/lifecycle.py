"""The connection lifecycle (SPEC section 6): every status change audited, with its event, in the
caller's transaction (or, for what a failed Plaid call revealed, in one of its own)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.activity import audit, events
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.db import Database, utcnow
from plaid_bridge.plaid.errors import ErrorMeaning, PlaidError
from plaid_bridge.sync.requests import request_sync

STATUS_CHANGED = "CONNECTION_STATUS_CHANGED"

# The user-facing notification each status emits; repeated at most once per 24 h per connection.
NOTIFICATIONS: dict[ConnectionStatus, str] = {
    ConnectionStatus.LOGIN_REQUIRED: "connection.needs_reauth",
    ConnectionStatus.ERROR: "connection.error",
    ConnectionStatus.PENDING_EXPIRATION: "connection.pending_expiration",
    ConnectionStatus.REVOKED: "connection.revoked",
    ConnectionStatus.REMOVED: "connection.removed",
}

REPAIRED_BY_A_CLEAN_ANSWER = frozenset(
    {ConnectionStatus.LOGIN_REQUIRED.value, ConnectionStatus.ERROR.value}
)
"""Statuses that a clean answer of Plaid about the Item (a live health check, an account
refresh) shows to be over."""


def status_for_error(meaning: ErrorMeaning, *, reported: bool) -> ConnectionStatus | None:
    """The status a Plaid error leads to (`plaid.errors.MEANINGS`), None to leave it alone.

    `reported`: Plaid states the error as the Item's condition (an ITEM/ERROR webhook, the
    `error` of `/item/get`, a failed sync), rather than one request of a user failing with it.
    """
    status = meaning.status_after(reported=reported)
    return None if status is None else ConnectionStatus(status)


async def transition(
    session: AsyncSession,
    connection: PlaidConnection,
    status: ConnectionStatus,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    consent_expires_at: datetime | None = None,
    event: str | None = None,
    event_data: dict[str, Any] | None = None,
    actor: str | None = None,
    request_id: str | None = None,
    plaid_request_id: str | None = None,
) -> bool:
    """Move `connection` to `status` (error fields set, or cleared when None).

    Audits the change and emits `event` (default: the status's notification; a repair back to
    ACTIVE emits `connection.repaired`) unless the same notification went out for this
    connection in the last 24 hours. A connection already REMOVED never changes again. Returns
    whether anything changed. Flushes nothing itself: the caller's transaction decides.
    """
    if connection.status == ConnectionStatus.REMOVED.value:
        return False
    previous = connection.status
    unchanged = (
        previous == status.value
        and connection.error_code == error_code
        and (consent_expires_at is None or connection.consent_expires_at == consent_expires_at)
    )
    if unchanged:
        return False
    connection.status = status.value
    connection.status_changed_at = utcnow()
    connection.error_code = error_code
    connection.error_message = error_message
    if consent_expires_at is not None:
        connection.consent_expires_at = consent_expires_at
    await audit.record(
        session,
        org_id=connection.org_id,
        action=STATUS_CHANGED,
        user_id=actor,
        item_id=connection.item_id,
        request_id=request_id,
        plaid_request_id=plaid_request_id,
        error_code=error_code,
        details={"from": previous, "to": status.value},
    )
    if event is None:
        if status is ConnectionStatus.ACTIVE:
            event = "connection.repaired" if previous != ConnectionStatus.ACTIVE.value else None
        else:
            event = NOTIFICATIONS.get(status)
    if event is not None:
        data: dict[str, Any] = {"status": status.value, "previousStatus": previous}
        if error_code:
            data["errorCode"] = error_code
        if connection.consent_expires_at is not None:
            data["consentExpiresAt"] = connection.consent_expires_at.isoformat()
        data.update(event_data or {})
        await events.emit(
            session,
            org_id=connection.org_id,
            type=event,
            item_id=connection.item_id,
            data=data,
            throttle=True,
        )
    return True


async def repair(
    session: AsyncSession,
    connection: PlaidConnection,
    *,
    actor: str | None = None,
    request_id: str | None = None,
    plaid_request_id: str | None = None,
    reason: str,
) -> bool:
    """Plaid just answered cleanly for the Item: a connection marked LOGIN_REQUIRED or ERROR is
    ACTIVE again with its error cleared (audited, `connection.repaired`) and a sync is queued to
    catch up, as the LOGIN_REPAIRED webhook does. Returns whether it was repaired."""
    if connection.status not in REPAIRED_BY_A_CLEAN_ANSWER:
        return False
    changed = await transition(
        session,
        connection,
        ConnectionStatus.ACTIVE,
        actor=actor,
        request_id=request_id,
        plaid_request_id=plaid_request_id,
    )
    if changed:
        await request_sync(session, connection.item_id, reason=reason)
    return changed


async def transition_for_error(
    session: AsyncSession, connection: PlaidConnection, status: ConnectionStatus, error: PlaidError
) -> bool:
    """`transition` to `status`, carrying the Plaid error's code, message and request id, in the
    caller's transaction."""
    return await transition(
        session,
        connection,
        status,
        error_code=error.error_code,
        error_message=error.display_message or error.error_code,
        plaid_request_id=error.request_id,
    )


async def record_plaid_error(
    database: Database, connection: PlaidConnection, error: PlaidError, *, reported: bool = False
) -> None:
    """Record on the connection what a failed Plaid call revealed (`status_for_error`: login
    required, revoked, locked...), in a transaction of its own: the request that hit the error
    is about to roll back. Errors that reveal nothing lasting change nothing."""
    status = status_for_error(error.meaning, reported=reported)
    if status is None or (
        connection.status == status.value and connection.error_code == error.error_code
    ):
        return
    async with database.transaction() as session:
        row = await session.get(PlaidConnection, connection.id, with_for_update=True)
        if row is None:
            return
        await transition_for_error(session, row, status, error)
