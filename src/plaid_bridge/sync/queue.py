"""Executing sync requests: claim due ones with a lease, run the engine, settle the request.

`plaid_sync_requests` holds at most one row per Item (see `requests.request_sync`). A worker
claims due rows (QUEUED and due, or RUNNING with an expired lease: its worker died), marks them
RUNNING under its name, renews the lease (`sync_lease_seconds`, every third of it) while the
engine runs, then settles each row: a request that arrived meanwhile (`rerun`) queues exactly one
more pass, a success deletes the row, a failure worth retrying backs off, and after
`sync_max_attempts` failures the request is dropped and recorded as an abandoned run (the
reconciler queues the Item again later). A run cancelled because its worker is stopping hands its
row back, due at once for any worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import and_, case, delete, exists, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from plaid_bridge.config import Settings
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import dialect_name, utcnow
from plaid_bridge.services import Services
from plaid_bridge.sync.engine import Outcome, SyncResult, sync_item
from plaid_bridge.sync.models import SyncRequest, SyncRequestState, SyncRun
from plaid_bridge.sync.requests import SYNCABLE, request_sync

logger = logging.getLogger("plaid_bridge.sync.queue")

ABANDONED = "abandoned"
RECONCILE_REASON = "reconcile"
_MAX_BACKOFF = timedelta(hours=6)
_BUSY_DELAY = timedelta(seconds=5)
_RELEASE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A request this worker marked RUNNING: its Item, why it was asked for, failures so far."""

    item_id: str
    reason: str
    attempts: int


def _due(now: datetime) -> ColumnElement[bool]:
    request = SyncRequest
    return or_(
        and_(request.state == SyncRequestState.QUEUED.value, request.not_before <= now),
        and_(request.state == SyncRequestState.RUNNING.value, request.claimed_until < now),
    )


async def claim_due(services: Services, worker_id: str, limit: int) -> list[Claim]:
    """Mark up to `limit` due requests RUNNING for `worker_id`, in one statement.

    The candidates are picked once, in a materialised CTE (`FOR UPDATE SKIP LOCKED` on
    PostgreSQL): as a plain subquery the planner may re-run it per updated row, each run skipping
    other rows, and claim more than `limit`. The update re-checks dueness on each row, so two
    workers never claim the same request; on SQLite it is also the transaction's first statement,
    a write, which avoids a stale read snapshot. `rerun` is cleared: the run about to start
    covers earlier requests.
    """
    now = utcnow()
    lease = timedelta(seconds=services.settings.sync_lease_seconds)
    async with services.database.transaction() as session:
        candidates = (
            select(SyncRequest.item_id)
            .where(_due(now))
            .order_by(SyncRequest.not_before)
            .limit(limit)
        )
        if dialect_name(session) == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        picked = candidates.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        statement = (
            update(SyncRequest)
            .where(SyncRequest.item_id.in_(select(picked.c.item_id)), _due(now))
            .values(
                state=SyncRequestState.RUNNING.value,
                rerun=False,
                claimed_by=worker_id,
                claimed_until=now + lease,
            )
            .returning(SyncRequest.item_id, SyncRequest.reason, SyncRequest.attempts)
            .execution_options(synchronize_session=False)
        )
        rows = (await session.execute(statement)).all()
    return [Claim(item_id, reason, attempts) for item_id, reason, attempts in rows]


async def _keep_lease(services: Services, worker_id: str, item_id: str) -> None:
    """Renew the claim every third of the lease while the run lasts (cancelled when it ends).

    A renewal that fails (the database briefly away) is logged and tried again at the next
    third: the run goes on, and the lease still has two thirds left."""
    lease = services.settings.sync_lease_seconds
    while True:
        await anyio.sleep(lease / 3)
        try:
            async with services.database.transaction() as session:
                await session.execute(
                    update(SyncRequest)
                    .where(SyncRequest.item_id == item_id, SyncRequest.claimed_by == worker_id)
                    .values(claimed_until=utcnow() + timedelta(seconds=lease))
                    .execution_options(synchronize_session=False)
                )
        except SQLAlchemyError as error:
            logger.warning(
                "plaid.sync.lease_not_renewed",
                extra={"item_id": item_id, "error_type": type(error).__name__},
            )


async def _release(services: Services, worker_id: str, claim: Claim) -> None:
    """Hand an interrupted run's request back (the worker is stopping): queued, due at once for
    any worker, its attempts unchanged. Bounded in time: if the database does not answer, the
    lease runs out instead."""
    mine = and_(SyncRequest.item_id == claim.item_id, SyncRequest.claimed_by == worker_id)
    with anyio.move_on_after(_RELEASE_SECONDS):
        try:
            async with services.database.transaction() as session:
                await _requeue(session, mine, not_before=utcnow())
        except SQLAlchemyError as error:
            logger.warning(
                "plaid.sync.not_released",
                extra={"item_id": claim.item_id, "error_type": type(error).__name__},
            )
            return
        logger.info("plaid.sync.released", extra={"item_id": claim.item_id})


def _backoff(settings: Settings, attempts: int) -> timedelta:
    base = settings.sync_retry_backoff_seconds
    return min(timedelta(seconds=base * 2 ** max(attempts - 1, 0)), _MAX_BACKOFF)


async def _settle(services: Services, worker_id: str, claim: Claim, result: SyncResult) -> None:
    """Finish one claimed request after its run, as its outcome says; a request whose lease
    another worker took over is left to that worker."""
    mine = and_(SyncRequest.item_id == claim.item_id, SyncRequest.claimed_by == worker_id)
    async with services.database.transaction() as session:
        if result.outcome is Outcome.BUSY:
            await _look_again_soon(session, mine)
        elif result.outcome is Outcome.SUPERSEDED or not result.retryable:
            await _finish(session, mine)
        else:
            await _retry_or_abandon(session, mine, claim, result, services.settings)


async def _look_again_soon(session: AsyncSession, mine: ColumnElement[bool]) -> None:
    """Someone else is syncing the Item right now: queue the request again shortly."""
    await _requeue(session, mine, not_before=utcnow() + _BUSY_DELAY)


async def _finish(session: AsyncSession, mine: ColumnElement[bool]) -> None:
    """Done (or nothing worth retrying): drop the request, unless another arrived during the run,
    which gets a pass of its own at once."""
    if not await _drop(session, mine):
        await _requeue(session, mine, attempts=0, not_before=utcnow(), last_error=None)


async def _retry_or_abandon(
    session: AsyncSession,
    mine: ColumnElement[bool],
    claim: Claim,
    result: SyncResult,
    settings: Settings,
) -> None:
    """A failure worth retrying: queued again after a backoff that doubles per attempt, or at
    once if another request arrived during the run (as a request overrides the backoff of a
    queued one: Plaid's "updates available" right after a "not ready" must not wait). After
    `sync_max_attempts` the request is dropped and recorded as an abandoned run, unless another
    request arrived during the run: that one starts its own count."""
    attempts = claim.attempts + 1
    if attempts >= settings.sync_max_attempts:
        if await _drop(session, mine):
            _record_abandoned(session, claim, result, attempts)
            return
        attempts = 0
    now = utcnow()
    await _requeue(
        session,
        mine,
        attempts=attempts,
        # SET reads the row as it was: `rerun` is the arrival during the run.
        not_before=case((SyncRequest.rerun, now), else_=now + _backoff(settings, max(attempts, 1))),
        last_error=result.error_code or result.outcome.value,
    )


async def _requeue(session: AsyncSession, mine: ColumnElement[bool], **values: Any) -> None:
    """The claimed request QUEUED again, unclaimed, with `values` set too."""
    await session.execute(
        update(SyncRequest)
        .where(mine)
        .values(
            state=SyncRequestState.QUEUED.value,
            rerun=False,
            claimed_by=None,
            claimed_until=None,
            **values,
        )
        .execution_options(synchronize_session=False)
    )


async def _drop(session: AsyncSession, mine: ColumnElement[bool]) -> bool:
    """Delete the claimed request unless a new one arrived during the run; whether it did."""
    deleted = await session.execute(
        delete(SyncRequest)
        .where(mine, SyncRequest.rerun.is_(False))
        .execution_options(synchronize_session=False)
    )
    return bool(deleted.rowcount)  # type: ignore[attr-defined]


def _record_abandoned(
    session: AsyncSession, claim: Claim, result: SyncResult, attempts: int
) -> None:
    now = utcnow()
    session.add(
        SyncRun(
            item_id=claim.item_id,
            trigger=claim.reason[:64],
            outcome=ABANDONED,
            plaid_request_ids=[],
            error_code=result.error_code,
            started_at=now,
            finished_at=now,
        )
    )
    logger.warning(
        "plaid.sync.abandoned",
        extra={"item_id": claim.item_id, "attempts": attempts, "error_code": result.error_code},
    )


async def _execute(services: Services, worker_id: str, claim: Claim) -> None:
    """Run one claimed request with its lease kept, then settle it. Cancelled (the worker is
    stopping), the run stores nothing of its update and the request is handed back."""
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_keep_lease, services, worker_id, claim.item_id)
            result = await sync_item(services, claim.item_id, trigger=claim.reason)
            group.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await _release(services, worker_id, claim)
        raise
    await _settle(services, worker_id, claim, result)


async def run_claimed(services: Services, worker_id: str, claim: Claim) -> None:
    """Run one claimed request and settle it; a failure to settle is logged and leaves its lease
    to expire, so a later pass picks it up again. Cancelled, it hands the request back."""
    try:
        await _execute(services, worker_id, claim)
    except Exception:
        logger.exception("plaid.sync.queue_error", extra={"item_id": claim.item_id})


async def process_due(services: Services, *, worker_id: str, limit: int) -> int:
    """Claim up to `limit` due sync requests and run them (concurrently, one per Item).

    Returns how many requests were claimed; 0 means nothing was due. The worker's own loop keeps
    a steady pool instead (`worker.Worker`); this is one batch, for one-off passes.
    """
    claims = await claim_due(services, worker_id, limit)
    async with anyio.create_task_group() as group:
        for each in claims:
            group.start_soon(run_claimed, services, worker_id, each)
    return len(claims)


async def enqueue_stale(services: Services) -> int:
    """Queue a sync for every syncable Item without a successful sync (or, never synced, without
    a creation) for longer than `sync_reconcile_after_seconds` and with no request pending:
    recovery from missed webhooks. Returns how many were queued."""
    now = utcnow()
    cutoff = now - timedelta(seconds=services.settings.sync_reconcile_after_seconds)
    connection = PlaidConnection
    stale = (
        select(connection.item_id)
        .where(
            connection.status.in_([status.value for status in SYNCABLE]),
            connection.access_token_encrypted.is_not(None),
            func.coalesce(connection.last_synced_at, connection.created_at) < cutoff,
            ~exists().where(SyncRequest.item_id == connection.item_id),
        )
        .order_by(connection.item_id)
    )
    async with services.database.transaction() as session:
        item_ids = list((await session.scalars(stale)).all())
        for item_id in item_ids:
            await request_sync(session, item_id, reason=RECONCILE_REASON)
    if item_ids:
        logger.info("plaid.sync.reconciled", extra={"queued": len(item_ids)})
    return len(item_ids)
