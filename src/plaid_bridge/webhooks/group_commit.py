"""Group commit of verified webhooks into the inbox: concurrent deliveries share one INSERT, one
COMMIT and so one fsync, and each is answered only once its batch is durable.

A burst of webhooks would otherwise cost a pooled session, a transaction and a disk flush each.
Here one flusher task per writer drains a queue while it holds anything: a batch is whatever
arrived while the previous commit ran, at most `MAX_BATCH` rows. Promises kept:

- durable before the answer: `store` returns only after the COMMIT of its row's batch;
- a failing batch fails only its own deliveries (their requests answer 503 or 500, never 200;
  Plaid redelivers). A batch refused for what one row holds is retried row by row, so a bad
  delivery does not take its neighbours down with it;
- the replay guard holds inside a batch too: two deliveries of one signed token in one batch are
  one row (the second is a duplicate, answered once the first is durable);
- bounded waiting: beyond `max_pending` unanswered deliveries a new one is refused at once
  (503 with Retry-After) rather than queued for seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from plaid_bridge import wakeups
from plaid_bridge.db import Database
from plaid_bridge.errors import Unavailable, database_unavailable
from plaid_bridge.webhooks.intake import Stored
from plaid_bridge.webhooks.models import WebhookEvent

logger = logging.getLogger("plaid_bridge.webhooks")

MAX_BATCH = 500
BACKLOG_RETRY_AFTER = 1

_Entry = tuple[dict[str, Any], "asyncio.Future[Stored | None]"]


class WebhookBacklog(Unavailable):
    """More webhooks wait for the database than the process lets wait; nothing was stored."""

    code = "WEBHOOK_BACKLOG"
    message = "Too many webhooks are waiting to be stored; try again shortly."


def _stopping() -> Unavailable:
    return Unavailable(
        "The service is stopping; try again shortly.", retry_after=BACKLOG_RETRY_AFTER
    )


# One statement for any batch on PostgreSQL: the rows as arrays, so its text never changes and
# the server prepares it once (a multi-row VALUES list would be new SQL for every batch size).
_POSTGRESQL_INSERT = text(
    """
    INSERT INTO plaid_webhook_events (webhook_type, webhook_code, item_id, body, body_sha256,
        token_sha256, signed_at, status, attempts, received_at)
    SELECT * FROM unnest(
        CAST(:webhook_type AS varchar[]), CAST(:webhook_code AS varchar[]),
        CAST(:item_id AS varchar[]), CAST(:body AS text[]), CAST(:body_sha256 AS varchar[]),
        CAST(:token_sha256 AS varchar[]), CAST(:signed_at AS timestamptz[]),
        CAST(:status AS varchar[]), CAST(:attempts AS integer[]),
        CAST(:received_at AS timestamptz[]))
    ON CONFLICT (token_sha256) DO NOTHING
    RETURNING id, token_sha256, body_sha256
    """
)
_SQLITE_INSERT = (
    sqlite_insert(WebhookEvent)
    .on_conflict_do_nothing(index_elements=["token_sha256"])
    .returning(WebhookEvent.id, WebhookEvent.token_sha256, WebhookEvent.body_sha256)
)


def _as_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in rows[0]}


class InboxWriter:
    """Writes inbox rows by group commit; one per process and database, used on one loop."""

    def __init__(self, database: Database, *, max_pending: int, max_batch: int = MAX_BATCH) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError("max_pending and max_batch must be at least 1")
        self._database = database
        self._postgresql = database.dialect == "postgresql"
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._queue: deque[_Entry] = deque()
        self._unanswered = 0
        self._flusher: asyncio.Task[None] | None = None

    @property
    def full(self) -> bool:
        """Whether a delivery handed to `store` now would be refused (`WebhookBacklog`)."""
        return self._unanswered >= self._max_pending

    @property
    def pending(self) -> int:
        """Deliveries handed to `store` and not yet answered (queued or being committed)."""
        return self._unanswered

    async def store(self, row: dict[str, Any]) -> Stored | None:
        """Store `row` (an `intake.inbox_row`) and return it once committed; None when its
        verified token is already in the inbox (a replay: nothing added). Raises
        `WebhookBacklog` at once when `max_pending` deliveries are already waiting, and the
        batch's database error when its commit failed."""
        if self.full:
            raise WebhookBacklog(retry_after=BACKLOG_RETRY_AFTER)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored | None] = loop.create_future()
        self._queue.append((row, future))
        self._unanswered += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._drain())
        try:
            # Shielded: a request that goes away leaves its row to the batch, which commits it
            # or not as a whole; the future is only ever settled by the flusher.
            return await asyncio.shield(future)
        finally:
            self._unanswered -= 1

    async def _drain(self) -> None:
        while self._queue:
            size = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(size)]
            try:
                await self._flush(batch)
            finally:
                for _, future in batch:  # cancelled mid-commit (shutdown): nobody waits forever
                    if not future.done():
                        future.set_exception(_stopping())

    async def _flush(self, batch: list[_Entry]) -> None:
        rows = [row for row, _ in batch]
        try:
            outcomes = await self.commit(rows)
        except Exception as error:
            if len(batch) > 1 and not database_unavailable(error):
                logger.warning("webhooks.batch_refused", extra={"rows": len(batch)})
                for entry in batch:
                    await self._flush([entry])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    async def commit(self, rows: list[dict[str, Any]]) -> list[Stored | None]:
        """Insert `rows` in one transaction and commit it: what each row became, in order
        (None: its token was already stored, earlier or earlier in `rows`).

        A statement failing on a dead pooled session (the database restarted) is retried once
        on a fresh one; a failure of the COMMIT itself is not retried, since whether it took
        effect is unknown (the requests answer 503 and Plaid redelivers)."""
        unique: list[dict[str, Any]] = []
        tokens: set[str] = set()
        for row in rows:
            token = row["token_sha256"]
            if token is None or token not in tokens:
                unique.append(row)
                if token is not None:
                    tokens.add(token)
        for attempt in (1, 2):
            committing = False
            try:
                async with self._database.engine.begin() as connection:
                    if self._postgresql:
                        result = await connection.execute(_POSTGRESQL_INSERT, _as_columns(unique))
                    else:  # SQLite: one multi-row INSERT (SQLAlchemy's insertmanyvalues)
                        result = await connection.execute(_SQLITE_INSERT, unique)
                    written = result.all()
                    if written:
                        await wakeups.notify_inbox(connection)  # delivered with the commit
                    committing = True  # the block's end commits
                break
            except DBAPIError as error:
                if attempt == 2 or committing or not error.connection_invalidated:
                    raise
                logger.warning("webhooks.insert_retried")
        # Rows without a token never conflict; rows alike in token and body are alike in all
        # but their receipt time, so which of them gets which id does not matter.
        ids: defaultdict[tuple[str | None, str], deque[int]] = defaultdict(deque)
        for event_id, token, body_sha256 in written:
            ids[(token, body_sha256)].append(event_id)
        outcomes: list[Stored | None] = []
        for row in rows:
            found = ids.get((row["token_sha256"], row["body_sha256"]))
            if not found:
                outcomes.append(None)
                continue
            outcomes.append(
                Stored(found.popleft(), row["webhook_type"], row["webhook_code"], row["item_id"])
            )
        return outcomes

    async def aclose(self) -> None:
        """Wait for the deliveries already queued to be committed (or to fail)."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            await asyncio.wait([flusher])
