"""Asking for a sync: recorded in the caller's transaction, coalesced per Item."""

from __future__ import annotations

from sqlalchemy import case
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.db import upsert, utcnow
from plaid_bridge.sync.models import SyncRequest, SyncRequestState


async def request_sync(session: AsyncSession, item_id: str, *, reason: str) -> None:
    """Queue a sync of `item_id`: a queued request absorbs it; a running one gets one more pass.

    One atomic upsert, so concurrent requests never race; written in the caller's transaction
    (a rollback drops the request with the change that decided it).
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
