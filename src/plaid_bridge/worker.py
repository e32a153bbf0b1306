"""The worker: applies stored webhooks from the inbox and runs the sync queue.

Runs embedded in the API process (`WORKER_MODE=embedded`) or as `plaid-bridge worker`; any
number may run against one database. An inbox row is claimed under a lease in one short
transaction (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite has a single writer) and processed in
its own transaction that applies the effect and marks the row DONE together, only while the
claim is still this worker's: a crashed worker's rows are claimed again once its lease runs out,
and an event is never applied twice. An Item's webhooks are applied in the order received.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from plaid_bridge.config import Settings
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import dialect_name, utcnow
from plaid_bridge.dependencies import Services
from plaid_bridge.logs import item_id_var
from plaid_bridge.redaction import redact_text
from plaid_bridge.sync import queue as sync_queue
from plaid_bridge.webhooks import handlers
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent

__all__ = ["Worker", "default_worker_id", "serve"]

logger = logging.getLogger("plaid_bridge.worker")

_PENDING = InboxStatus.PENDING.value
_PROCESSING = InboxStatus.PROCESSING.value


def default_worker_id(role: str = "worker") -> str:
    """A worker id unique among live processes: host, pid and role."""
    return f"{socket.gethostname()}:{os.getpid()}:{role}"


class _LeaseLost(Exception):
    """Another worker took the row over (our lease ran out); our work on it is discarded."""


class Worker:
    """Claims due inbox rows and applies them; see the module docstring for the guarantees.

    `lease_seconds` bounds how long a crashed worker's rows wait before another worker takes
    them; a row failing `max_attempts` times (or abandoned by that many crashed claims) becomes
    FAILED, retried before that with a backoff from `retry_base_seconds` doubling up to
    `retry_max_seconds`. `wakeup` may be set (by the webhook intake) to end a wait early.
    """

    def __init__(
        self,
        services: Services,
        *,
        worker_id: str,
        lease_seconds: float = 60.0,
        batch: int = 50,
        poll_interval: float = 1.0,
        max_attempts: int = 8,
        retry_base_seconds: float = 5.0,
        retry_max_seconds: float = 3600.0,
        reconcile_interval: float = 300.0,
    ) -> None:
        if lease_seconds <= 0 or batch < 1 or max_attempts < 1:
            raise ValueError("lease_seconds, batch and max_attempts must be positive")
        self.services = services
        self.worker_id = worker_id
        self.lease = timedelta(seconds=lease_seconds)
        self.batch = batch
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.reconcile_interval = reconcile_interval
        self.wakeup = asyncio.Event()
        self._sync_wakeup = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._next_reconcile = 0.0

    # ---- the loop -------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One pass: every due inbox row (up to `batch`), then the sync queue. Returns the number
        of inbox rows handled (applied, ignored or failed)."""
        handled = await self.process_inbox()
        await self.run_sync_queue()
        return handled

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Two loops until `stop` is set: the inbox and the sync queue, side by side, so a long
        sync (minutes under Plaid's rate limits) never holds up webhooks. A pass that found work
        is followed at once by the next; otherwise a loop waits up to `poll_interval` or until
        woken (`wakeup` by the webhook intake; the sync loop by inbox rows that were applied).
        On stop, the row in progress is finished and the rest of the batch is released."""
        self._stop = stop
        logger.info("worker.started", extra={"worker_id": self.worker_id})
        try:
            await asyncio.gather(
                self._loop(stop, self._inbox_pass, self.wakeup, "inbox"),
                self._loop(stop, self.run_sync_queue, self._sync_wakeup, "sync"),
            )
        finally:
            self._stop = None
            logger.info("worker.stopped", extra={"worker_id": self.worker_id})

    async def _inbox_pass(self) -> int:
        handled = await self.process_inbox()
        if handled:
            self._sync_wakeup.set()  # applied webhooks may have queued syncs
        return handled

    async def _loop(
        self,
        stop: asyncio.Event,
        one_pass: Callable[[], Awaitable[int]],
        wakeup: asyncio.Event,
        name: str,
    ) -> None:
        while not stop.is_set():
            wakeup.clear()  # before the pass: a wakeup during it is not lost
            try:
                busy = await one_pass() > 0
            except Exception as error:  # a database outage must not end the loop
                logger.error("worker.pass_failed", extra={"loop": name}, exc_info=error)
                busy = False
            if not busy:
                await self._pause(stop, wakeup)

    async def _pause(self, stop: asyncio.Event, wakeup: asyncio.Event) -> None:
        waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())}
        try:
            await asyncio.wait(
                waits, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # ---- the inbox ------------------------------------------------------------------------

    async def process_inbox(self) -> int:
        """Claim up to `batch` due rows and apply them one by one, in id order."""
        claimed = await self._claim()
        for position, event_id in enumerate(claimed):
            if self._stopping():
                await self._release(claimed[position:])
                return position
            await self._process(event_id)
        return len(claimed)

    async def _claim(self) -> list[int]:
        """Due rows (PENDING past their backoff, or PROCESSING past a lease), at most one per
        Item: the Item's oldest unfinished row, so a later webhook never overtakes an earlier
        one even across workers. Claimed rows count an attempt."""
        now = utcnow()
        candidate = aliased(WebhookEvent, name="candidate")
        earlier = aliased(WebhookEvent, name="earlier")
        due = or_(
            and_(
                candidate.status == _PENDING,
                or_(candidate.claimed_until.is_(None), candidate.claimed_until <= now),
            ),
            and_(candidate.status == _PROCESSING, candidate.claimed_until < now),
        )
        unfinished_before = exists().where(
            earlier.item_id == candidate.item_id,
            earlier.id < candidate.id,
            earlier.status.in_((_PENDING, _PROCESSING)),
        )
        async with self.services.database.transaction() as session:
            query = (
                select(candidate.id)
                .where(due, ~unfinished_before)
                .order_by(candidate.id)
                .limit(self.batch)
            )
            if dialect_name(session) == "postgresql":
                # Rows another worker is claiming right now are skipped, not waited for.
                query = query.with_for_update(skip_locked=True)
            claimable = query.cte("claimable")
            result = await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id.in_(select(claimable.c.id)))
                .values(
                    status=_PROCESSING,
                    claimed_by=self.worker_id,
                    claimed_until=now + self.lease,
                    attempts=WebhookEvent.attempts + 1,
                )
                .returning(WebhookEvent.id)
                .execution_options(synchronize_session=False)
            )
            return sorted(result.scalars())

    async def _process(self, event_id: int) -> None:
        try:
            async with self.services.database.transaction() as session:
                event = await self._hold(session, event_id)
                outcome = await self._apply(session, event)
                kind = (event.webhook_type, event.webhook_code)
        except _LeaseLost:
            logger.warning(
                "webhook.lease_lost", extra={"event_id": event_id, "worker_id": self.worker_id}
            )
            return
        except Exception as error:
            await self._failed(event_id, error)
            self.services.metrics.webhook_received(None, None, "failed")
            return
        self.services.metrics.webhook_received(kind[0], kind[1], outcome)
        logger.info(
            "webhook.processed",
            extra={
                "event_id": event_id,
                "worker_id": self.worker_id,
                "outcome": outcome,
                "webhook_type": kind[0],
                "webhook_code": kind[1],
            },
        )

    async def _hold(self, session: AsyncSession, event_id: int) -> WebhookEvent:
        """The row, still claimed by us, with its lease renewed (which locks it until commit)."""
        renewed = cast(
            CursorResult[Any],
            await session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id == event_id,
                    WebhookEvent.claimed_by == self.worker_id,
                    WebhookEvent.status == _PROCESSING,
                )
                .values(claimed_until=utcnow() + self.lease)
                .execution_options(synchronize_session=False)
            ),
        )
        event = await session.get(WebhookEvent, event_id) if renewed.rowcount == 1 else None
        if event is None:
            raise _LeaseLost(event_id)
        return event

    async def _apply(self, session: AsyncSession, event: WebhookEvent) -> str:
        """The effect and the DONE mark, in the caller's transaction; returns what happened."""
        if event.attempts > self.max_attempts:
            self._finish(event, InboxStatus.FAILED, "abandoned by workers that stopped mid-way")
            return "abandoned"
        try:
            payload = json.loads(event.body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._finish(event, InboxStatus.FAILED, "the body is not a JSON object")
            return "malformed"
        item_id = payload.get("item_id")
        item_id = item_id if isinstance(item_id, str) else event.item_id
        token = item_id_var.set(item_id)
        try:
            connection = None
            if item_id is not None:
                connection = await session.scalar(
                    select(PlaidConnection)
                    .where(PlaidConnection.item_id == item_id)
                    .with_for_update()
                )
            applied = await handlers.handle(
                session, connection, payload, signed_at=event.signed_at or event.received_at
            )
        finally:
            item_id_var.reset(token)
        self._finish(event, InboxStatus.DONE, None)
        return "applied" if applied else "ignored"

    @staticmethod
    def _finish(event: WebhookEvent, status: InboxStatus, error: str | None) -> None:
        event.status = status.value
        event.last_error = error
        event.claimed_until = None
        event.processed_at = utcnow()

    async def _failed(self, event_id: int, error: Exception) -> None:
        """Record the failure: PENDING again after a backoff, or FAILED after the last attempt."""
        message = redact_text(f"{type(error).__name__}: {error}")[:2000]
        async with self.services.database.transaction() as session:
            event = await session.get(WebhookEvent, event_id, with_for_update=True)
            if event is None or event.claimed_by != self.worker_id or event.status != _PROCESSING:
                return
            event.last_error = message
            if event.attempts >= self.max_attempts:
                self._finish(event, InboxStatus.FAILED, message)
            else:
                delay = min(
                    self.retry_base_seconds * 2 ** (event.attempts - 1), self.retry_max_seconds
                )
                event.status = _PENDING
                event.claimed_by = None
                # For a PENDING row, `claimed_until` is the end of its backoff.
                event.claimed_until = utcnow() + timedelta(seconds=delay)
        logger.error(
            "webhook.failed",
            exc_info=error,
            extra={"event_id": event_id, "worker_id": self.worker_id, "attempts": event.attempts},
        )

    async def _release(self, event_ids: Sequence[int]) -> None:
        """Hand back claimed rows we will not process (stopping), for any worker at once."""
        async with self.services.database.transaction() as session:
            await session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id.in_(event_ids),
                    WebhookEvent.claimed_by == self.worker_id,
                    WebhookEvent.status == _PROCESSING,
                )
                .values(
                    status=_PENDING,
                    claimed_by=None,
                    claimed_until=None,
                    attempts=WebhookEvent.attempts - 1,
                )
                .execution_options(synchronize_session=False)
            )

    # ---- the sync queue -------------------------------------------------------------------

    async def run_sync_queue(self) -> int:
        """Due syncs, and every `reconcile_interval` seconds a sync for connections gone stale
        (missed-webhook recovery). Returns the number of syncs run."""
        if time.monotonic() >= self._next_reconcile:
            await sync_queue.enqueue_stale(self.services)
            self._next_reconcile = time.monotonic() + self.reconcile_interval
        return await sync_queue.process_due(
            self.services, worker_id=self.worker_id, limit=self.batch
        )


async def serve(settings: Settings) -> None:
    """`plaid-bridge worker`: run until SIGTERM or SIGINT, finishing the row in progress."""
    from plaid_bridge.app import build_services  # the app module imports this one

    services = build_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker = Worker(
        services, worker_id=default_worker_id(), lease_seconds=settings.worker_lease_seconds
    )
    try:
        await worker.run_forever(stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        services.plaid.close()
        await services.database.dispose()
