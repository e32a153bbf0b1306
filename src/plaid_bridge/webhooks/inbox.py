"""The webhook inbox: stored webhooks claimed under a lease and applied exactly once, in order.

Any number of workers may share one database. Rows are claimed in one short transaction
(PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite has a single writer), at most the oldest unfinished
row per Item, so an Item's webhooks are applied in the order received. Each row is processed in
its own transaction that applies the effect (`webhooks/handlers.py`) and marks the row DONE
together, only while the claim is still this worker's: a crashed worker's rows are claimed again
once its lease runs out, and an event is never applied twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database, dialect_name, utcnow
from plaid_bridge.logs import item_id_var
from plaid_bridge.ops.metrics import Metrics
from plaid_bridge.redaction import redact_text
from plaid_bridge.webhooks import handlers
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent

__all__ = ["Inbox", "LeaseLost"]

logger = logging.getLogger("plaid_bridge.webhooks.inbox")

_PENDING = InboxStatus.PENDING.value
_PROCESSING = InboxStatus.PROCESSING.value


class LeaseLost(Exception):
    """Another worker took the row over (our lease ran out); our work on it is discarded."""


class Inbox:
    """One worker's hand on the inbox: `claim` due rows, `process` each, `release` the rest.

    `lease` bounds how long a crashed worker's rows wait before another worker takes them; a row
    failing `max_attempts` times (or abandoned by that many crashed claims) becomes FAILED,
    retried before that with a backoff from `retry_base_seconds` doubling up to
    `retry_max_seconds`.
    """

    def __init__(
        self,
        database: Database,
        metrics: Metrics,
        *,
        worker_id: str,
        lease: timedelta,
        batch: int,
        max_attempts: int,
        retry_base_seconds: float,
        retry_max_seconds: float,
    ) -> None:
        self.database = database
        self.metrics = metrics
        self.worker_id = worker_id
        self.lease = lease
        self.batch = batch
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds

    async def claim(self) -> list[int]:
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
        async with self.database.transaction() as session:
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

    async def process(self, event_id: int) -> None:
        """Apply one claimed row in a transaction of its own, the effect and the DONE mark
        together; a row whose lease another worker took is left alone, and a failure is recorded
        on the row for a retry after its backoff."""
        try:
            async with self.database.transaction() as session:
                event = await self._hold(session, event_id)
                outcome = await self._apply(session, event)
                kind = (event.webhook_type, event.webhook_code)
        except LeaseLost:
            logger.warning(
                "webhook.lease_lost", extra={"event_id": event_id, "worker_id": self.worker_id}
            )
            return
        except Exception as error:
            await self._failed(event_id, error)
            self.metrics.webhook_received(None, None, "failed")
            return
        self.metrics.webhook_received(kind[0], kind[1], outcome)
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
            raise LeaseLost(event_id)
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
        async with self.database.transaction() as session:
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

    async def release(self, event_ids: Sequence[int]) -> None:
        """Hand back claimed rows we will not process (stopping), for any worker at once."""
        async with self.database.transaction() as session:
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
