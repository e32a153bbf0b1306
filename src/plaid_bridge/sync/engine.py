"""The /transactions/sync engine: one Item's store brought level with Plaid's ledger, atomically.

A run reads the Item's cursor and pages through `/transactions/sync` from it. The first page is
fetched before any database transaction opens (a typical update is that one page, so no pooled
connection waits idle in a transaction for Plaid); from then on everything happens inside one
transaction: each page is written (PostgreSQL) or staged (SQLite) while the next one is fetched,
and only once `has_more` is false does the new cursor join them and the transaction commit. A crash
anywhere before that commit leaves the previous cursor and data as they were; the next run starts
over from the same cursor. TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION restarts the update from
the cursor it started from (a bounded number of times); Plaid's "not ready yet" answer stores
nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import time
from dataclasses import dataclass, field

import anyio
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.activity import events
from plaid_bridge.connections import lifecycle
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.connections.service import store_accounts
from plaid_bridge.connections.tokens import decrypt_access_token
from plaid_bridge.db import utcnow
from plaid_bridge.plaid.errors import PlaidError, PlaidErrorClass
from plaid_bridge.plaid.types import Account, SyncPage
from plaid_bridge.services import Services
from plaid_bridge.sync.locks import local_lock, try_database_lock
from plaid_bridge.sync.models import SyncRun
from plaid_bridge.sync.requests import SYNCABLE
from plaid_bridge.sync.writer import Target, UpdateWriter, open_writer

logger = logging.getLogger("plaid_bridge.sync")

TRANSACTIONS_UPDATED = "transactions.updated"
INTERNAL_ERROR = "INTERNAL_ERROR"
# How long one page may wait for rate-limit slots before the run gives up (and is retried later).
_RATE_LIMIT_PATIENCE = 300.0
_WORTH_RETRYING = frozenset(
    {
        PlaidErrorClass.PLAID_TRANSIENT,
        PlaidErrorClass.RATE_LIMITED,
        PlaidErrorClass.INSTITUTION_TRANSIENT,
        PlaidErrorClass.RESTART_SYNC,
        PlaidErrorClass.NOT_READY,
    }
)


class Outcome(enum.StrEnum):
    """How a run ended; stored in `plaid_sync_runs.outcome`."""

    SUCCESS = "success"
    NOT_READY = "not_ready"
    """Plaid has no data yet for the Item: nothing stored as progress."""
    FAILED = "failed"
    SKIPPED = "skipped"
    """The connection is gone, removed, revoked or needs the user: Plaid was not called."""
    BUSY = "busy"
    """Another run of the same Item holds its lock; nothing was done (no run recorded)."""
    SUPERSEDED = "superseded"
    """Another process applied a sync of the Item meanwhile; this run's pages were dropped."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one call of `sync_item` did; counts are those of the update Plaid sent."""

    item_id: str
    outcome: Outcome
    pages: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0
    restarts: int = 0
    error_code: str | None = None
    error_class: PlaidErrorClass | None = None
    run_id: int | None = None
    apply_seconds: float | None = None
    """Time spent writing the update into the database, its commit included (successful runs)."""

    @property
    def retryable(self) -> bool:
        """Whether running again later may succeed without anyone acting."""
        if self.outcome in (Outcome.NOT_READY, Outcome.BUSY, Outcome.SUPERSEDED):
            return True
        if self.outcome is Outcome.FAILED:
            return self.error_class is None or self.error_class in _WORTH_RETRYING
        return False


@dataclass(slots=True)
class _Progress:
    """What a run has seen so far; counts are those of the current attempt at the update."""

    started_at: dt.datetime = field(default_factory=utcnow)
    clock: float = field(default_factory=time.monotonic)
    pages: int = 0
    added: int = 0
    modified: int = 0
    removed: int = 0
    restarts: int = 0
    request_ids: list[str] = field(default_factory=list)
    accounts: tuple[Account, ...] = ()
    update_status: str | None = None

    def record(self, page: SyncPage) -> None:
        self.pages += 1
        self.added += len(page.added)
        self.modified += len(page.modified)
        self.removed += len(page.removed)
        self.request_ids.append(page.request_id)
        if page.accounts:
            self.accounts = page.accounts
        self.update_status = page.transactions_update_status or self.update_status

    def restart(self) -> None:
        self.restarts += 1
        self.added = self.modified = self.removed = 0

    def run(self, item_id: str, trigger: str, outcome: Outcome, error_code: str | None) -> SyncRun:
        return SyncRun(
            item_id=item_id,
            trigger=trigger[:64],
            outcome=outcome.value,
            pages=self.pages,
            added=self.added,
            modified=self.modified,
            removed=self.removed,
            restarts=self.restarts,
            duration_ms=int((time.monotonic() - self.clock) * 1000),
            plaid_request_ids=list(self.request_ids),
            error_code=error_code,
            started_at=self.started_at,
            finished_at=utcnow(),
        )

    def result(
        self,
        item_id: str,
        outcome: Outcome,
        run: SyncRun | None = None,
        error: PlaidError | None = None,
        error_code: str | None = None,
    ) -> SyncResult:
        return SyncResult(
            item_id=item_id,
            outcome=outcome,
            pages=self.pages,
            added=self.added,
            modified=self.modified,
            removed=self.removed,
            restarts=self.restarts,
            error_code=error.error_code if error is not None else error_code,
            error_class=error.error_class if error is not None else None,
            run_id=run.id if run is not None else None,
        )


@dataclass(frozen=True, slots=True)
class _Start:
    item_id: str
    connection_id: str
    token: str
    cursor: str | None
    updated_at: dt.datetime
    """When the connection was last changed, as the run found it."""


async def sync_item(services: Services, item_id: str, *, trigger: str) -> SyncResult:
    """Bring the Item's stored transactions, accounts and cursor level with Plaid, all or nothing.

    Never overlaps another run of the same Item (returns BUSY at once instead of waiting). Every
    run that reaches the connection is recorded in `plaid_sync_runs`, and a failure that says
    something about the connection (login required, revoked, bank down) updates its status. Plaid
    failures are returned as a FAILED result, not raised; a bug of ours is logged and returned
    the same way with `error_code` INTERNAL_ERROR. Cancellation (or a crash) stores nothing.
    """
    started = time.monotonic()
    result = await _sync_item(services, item_id, trigger=trigger)
    services.metrics.sync_run(
        result.outcome.value,
        time.monotonic() - started,
        result.added + result.modified + result.removed,
    )
    return result


async def _sync_item(services: Services, item_id: str, *, trigger: str) -> SyncResult:
    with local_lock(services.database, item_id) as taken:
        if not taken:
            return SyncResult(item_id, Outcome.BUSY)
        progress = _Progress()
        start = await _prepare(services, item_id, trigger, progress)
        if isinstance(start, SyncResult):
            return start
        try:
            return await _fetch_and_apply(services, item_id, trigger, start, progress)
        except PlaidError as error:
            return await _record_failure(services, start, trigger, progress, error)
        except Exception:
            logger.exception("plaid.sync.internal_error", extra={"item_id": item_id})
            return await _record_failure(services, start, trigger, progress, None)


async def _prepare(
    services: Services, item_id: str, trigger: str, progress: _Progress
) -> _Start | SyncResult:
    """The connection's id, token and cursor; a SKIPPED result if it must not be synced."""
    async with services.database.transaction() as session:
        connection = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
        reason = None
        if connection is None:
            reason = "CONNECTION_NOT_FOUND"
        elif connection.access_token_encrypted is None or connection.status not in SYNCABLE:
            reason = f"CONNECTION_{connection.status}"
        if connection is None or reason is not None:  # (both, for the type checker)
            run = progress.run(item_id, trigger, Outcome.SKIPPED, reason)
            session.add(run)
            await session.flush()
            logger.info("plaid.sync.skipped", extra={"item_id": item_id, "reason": reason})
            return progress.result(item_id, Outcome.SKIPPED, run, error_code=reason)
        token = await decrypt_access_token(connection, cipher=services.cipher)
        await session.flush()  # a legacy token just re-encrypted changes `updated_at`
        return _Start(item_id, connection.id, token, connection.cursor, connection.updated_at)


async def _page_at(services: Services, start: _Start, cursor: str | None) -> SyncPage:
    """One page from `cursor`. Plaid allows 50 pages a minute per Item: a large update waits for
    its rate limit page by page (the cursor stays valid) rather than failing and starting over."""
    waited = 0.0
    while True:
        try:
            return await services.plaid.sync_transactions(
                access_token=start.token, cursor=cursor, count=services.settings.sync_page_size
            )
        except PlaidError as error:
            if error.error_class is not PlaidErrorClass.RATE_LIMITED:
                raise
            if waited >= _RATE_LIMIT_PATIENCE:
                raise
            delay = min(max(float(getattr(error, "retry_after", 0) or 0), 1.0), 60.0)
            logger.info("plaid.sync.rate_limited", extra={"item_id": start.item_id, "delay": delay})
            waited += delay
            await anyio.sleep(delay)


def _restart_or_raise(
    error: PlaidError, services: Services, start: _Start, progress: _Progress
) -> None:
    """Count a restart of the update for TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION; raise
    `error` itself when it is something else or the restarts are used up."""
    if error.error_class is not PlaidErrorClass.RESTART_SYNC:
        raise error
    if error.request_id:
        progress.request_ids.append(error.request_id)
    if progress.restarts >= services.settings.sync_max_restarts:
        raise error
    progress.restart()
    logger.info(
        "plaid.sync.restart", extra={"item_id": start.item_id, "restarts": progress.restarts}
    )


async def _first_page(services: Services, start: _Start, progress: _Progress) -> SyncPage:
    """The update's first page, restarted as Plaid asks."""
    while True:
        try:
            return await _page_at(services, start, start.cursor)
        except PlaidError as error:
            _restart_or_raise(error, services, start, progress)


async def _fetch_update(
    services: Services, start: _Start, writer: UpdateWriter, progress: _Progress, page: SyncPage
) -> SyncPage | None:
    """Hand every page of one update, from its first `page`, to the writer; the last page, or
    None when Plaid is not ready yet."""

    async def fetch(cursor: str, into: list[SyncPage | Exception]) -> None:
        try:
            into.append(await _page_at(services, start, cursor))
        except Exception as error:  # handed back to the loop, which raises it
            into.append(error)

    while True:
        progress.record(page)
        if page.not_ready:
            return None
        upcoming: list[SyncPage | Exception] = []
        async with anyio.create_task_group() as group:
            if page.has_more:
                group.start_soon(fetch, page.next_cursor, upcoming)
            await writer.add(page)
        if not page.has_more:
            return page
        fetched = upcoming[0]
        if isinstance(fetched, Exception):
            raise fetched
        page = fetched


async def _fetch_and_apply(
    services: Services, item_id: str, trigger: str, start: _Start, progress: _Progress
) -> SyncResult:
    """Fetch the update and store it in one transaction, opened only once its first page is in:
    no database connection waits idle in a transaction for Plaid's answer to the first call,
    which is the whole of a typical (one-page) update. The pages after it are written while the
    next one is fetched, inside the transaction (see the module's docstring)."""
    first = await _first_page(services, start, progress)
    async with services.database.transaction() as session:
        if not await try_database_lock(session, item_id):
            return SyncResult(item_id, Outcome.BUSY)
        seq = await session.scalar(
            select(PlaidConnection.change_seq).where(PlaidConnection.id == start.connection_id)
        )
        if seq is None:  # removed since the run began
            return await _without_update(session, item_id, trigger, progress, Outcome.SUPERSEDED)
        target = Target(start.connection_id, seq + 1, utcnow())
        writer = await open_writer(session, target)
        page = first
        while True:
            try:
                last = await _fetch_update(services, start, writer, progress, page)
                break
            except PlaidError as error:
                _restart_or_raise(error, services, start, progress)
                await writer.restart()
                page = await _first_page(services, start, progress)
        if last is None:
            await writer.discard()
            return await _without_update(session, item_id, trigger, progress, Outcome.NOT_READY)
        finishing = time.monotonic()
        if not await _advance(session, start, last.next_cursor, target):
            await writer.discard()
            return await _without_update(session, item_id, trigger, progress, Outcome.SUPERSEDED)
        await writer.finish()
        connection = await session.get(PlaidConnection, start.connection_id)
        assert connection is not None  # the guarded update above just matched it
        await _after_success(session, connection, progress)
        run = progress.run(item_id, trigger, Outcome.SUCCESS, None)
        session.add(run)
        await session.flush()
    applied = writer.seconds + time.monotonic() - finishing
    _log(run, apply_seconds=applied)
    result = progress.result(item_id, Outcome.SUCCESS, run)
    return dataclasses.replace(result, apply_seconds=applied)


async def _without_update(
    session: AsyncSession, item_id: str, trigger: str, progress: _Progress, outcome: Outcome
) -> SyncResult:
    """Record a run that stores no update (not ready, or overtaken); the caller commits."""
    run = progress.run(item_id, trigger, outcome, None)
    session.add(run)
    await session.flush()
    _log(run)
    return progress.result(item_id, outcome, run)


async def _advance(session: AsyncSession, start: _Start, cursor: str, target: Target) -> bool:
    """Move the connection to `cursor` and the update's sequence number; False if it moved on.

    Guarded by the cursor and sequence number the run started from (and the connection still
    being syncable), so a run that lost a race with another process, or a removal, applies
    nothing. On SQLite this is the transaction's first write to the main database, which takes
    the writer lock.
    """
    table = PlaidConnection
    statement = (
        update(table)
        .where(
            table.id == start.connection_id,
            table.change_seq == target.seq - 1,
            table.cursor.is_not_distinct_from(start.cursor),
            table.access_token_encrypted.is_not(None),
            table.status.in_([status.value for status in SYNCABLE]),
        )
        .values(
            change_seq=target.seq,
            cursor=cursor,
            last_synced_at=target.now,
            updated_at=target.now,
        )
        .returning(table.id)
        .execution_options(synchronize_session=False)
    )
    return await session.scalar(statement) is not None


async def _after_success(
    session: AsyncSession, connection: PlaidConnection, progress: _Progress
) -> None:
    """Accounts and balances from the response, Plaid's update flags, a cleared transient error,
    and the platform event when transactions changed."""
    if progress.accounts:
        await store_accounts(session, connection, progress.accounts)
    if progress.update_status == "HISTORICAL_UPDATE_COMPLETE":
        connection.initial_update_complete = connection.historical_update_complete = True
    elif progress.update_status == "INITIAL_UPDATE_COMPLETE":
        connection.initial_update_complete = True
    if connection.status == ConnectionStatus.ERROR.value:
        await lifecycle.transition(session, connection, ConnectionStatus.ACTIVE)
    if progress.added or progress.modified or progress.removed:
        await events.emit(
            session,
            org_id=connection.org_id,
            type=TRANSACTIONS_UPDATED,
            item_id=connection.item_id,
            data={
                "added": progress.added,
                "modified": progress.modified,
                "removed": progress.removed,
            },
        )


async def _record_failure(
    services: Services,
    start: _Start,
    trigger: str,
    progress: _Progress,
    error: PlaidError | None,
) -> SyncResult:
    """Record the failed run, and what the failure says about the connection, in a new
    transaction (the run's own one was rolled back).

    The status is left alone if the connection changed while the run was out (a webhook, a
    re-auth): what Plaid told the run may be older than that change, and the next run asks again.
    """
    item_id = start.item_id
    code = error.error_code if error is not None else INTERNAL_ERROR
    if error is not None and error.request_id and error.request_id not in progress.request_ids:
        progress.request_ids.append(error.request_id)
    async with services.database.transaction() as session:
        # A failed sync is Plaid reporting the Item's condition: even a passing one (the bank
        # is down) is recorded, and the next successful sync clears it.
        status = (
            lifecycle.status_for_error(error.meaning, reported=True) if error is not None else None
        )
        if error is not None and status is not None:
            connection = await session.scalar(
                select(PlaidConnection).where(PlaidConnection.item_id == item_id).with_for_update()
            )
            if connection is not None and connection.updated_at != start.updated_at:
                logger.info("plaid.sync.status_kept", extra={"item_id": item_id})
            elif connection is not None:
                await lifecycle.transition_for_error(session, connection, status, error)
        run = progress.run(item_id, trigger, Outcome.FAILED, code)
        session.add(run)
        await session.flush()
    _log(run)
    return progress.result(item_id, Outcome.FAILED, run, error=error, error_code=code)


def _log(run: SyncRun, *, apply_seconds: float | None = None) -> None:
    logger.info(
        "plaid.sync.run",
        extra={
            "item_id": run.item_id,
            "trigger": run.trigger,
            "outcome": run.outcome,
            "pages": run.pages,
            "added": run.added,
            "modified": run.modified,
            "removed": run.removed,
            "restarts": run.restarts,
            "duration_ms": run.duration_ms,
            "error_code": run.error_code,
            "apply_ms": None if apply_seconds is None else int(apply_seconds * 1000),
        },
    )
