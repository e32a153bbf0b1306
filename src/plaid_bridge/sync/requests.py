"""Asking for a sync: recorded in the caller's transaction, coalesced per Item."""

from __future__ import annotations

from sqlalchemy import case
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge import wakeups
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.db import upsert, utcnow
from plaid_bridge.errors import Conflict
from plaid_bridge.sync.models import SyncRequest, SyncRequestState

SYNCABLE = frozenset(
    {ConnectionStatus.ACTIVE, ConnectionStatus.ERROR, ConnectionStatus.PENDING_EXPIRATION}
)
"""Statuses whose Item may be synced; the others wait for the user (or are over)."""

_CANNOT_SYNC = {
    ConnectionStatus.LOGIN_REQUIRED: "The bank needs the user to sign in again before it can sync.",
    ConnectionStatus.REVOKED: "Access to this bank was revoked; connect the bank again.",
    ConnectionStatus.REMOVED: "This connection was removed.",
}


def refuse_unsyncable(connection: PlaidConnection) -> None:
    """Raise 409 `CONNECTION_<STATUS>` for a connection that cannot sync, with its status and
    error code as the reason and `needsReauth` when the user must sign in again; a sync asked
    for it would only be skipped."""
    if connection.status in SYNCABLE:
        return
    status = ConnectionStatus(connection.status)
    raise Conflict(
        _CANNOT_SYNC.get(status, "This connection cannot sync now."),
        code=f"CONNECTION_{status.value}",
        needs_reauth=status is ConnectionStatus.LOGIN_REQUIRED,
        details={"status": status.value, "errorCode": connection.error_code},
    )


async def request_sync(session: AsyncSession, item_id: str, *, reason: str) -> None:
    """Queue a sync of `item_id`: a queued request absorbs it; a running one gets one more pass.

    One atomic upsert, so concurrent requests never race; written in the caller's transaction
    (a rollback drops the request with the change that decided it), which also wakes listening
    workers when it commits.
    """
    now = utcnow()
    table = SyncRequest.__table__.c
    running = table.state == SyncRequestState.RUNNING.value
    statement = upsert(session, SyncRequest).values(
        item_id=item_id,
        state=SyncRequestState.QUEUED.value,
        rerun=False,
        reason=reason,
        attempts=0,
        not_before=now,
        requested_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.item_id],
        set_={
            "rerun": case((running, True), else_=table.rerun),
            # A request now overrides a retry backoff of a queued one.
            "not_before": case((running, table.not_before), else_=now),
        },
    )
    await session.execute(statement)
    await wakeups.notify_sync(session)
