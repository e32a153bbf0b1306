"""Group commit of webhooks: deliveries arriving together share one transaction, a failing batch
fails only its own deliveries, one signed token is one row even inside one batch, and beyond the
pending bound a webhook is answered 503 with Retry-After at once, never 200."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from plaid_bridge.db import Database, sync_url
from plaid_bridge.errors import database_unavailable
from plaid_bridge.plaid.webhook_verify import VerifiedWebhook
from plaid_bridge.webhooks import intake
from plaid_bridge.webhooks.group_commit import InboxWriter, WebhookBacklog
from plaid_bridge.webhooks.models import WebhookEvent
from tests.commit_faults import CommitFaults
from tests.conftest import make_settings
from tests.webhooks.conftest import Hooks, SigningKey, webhook_body

pytestmark = pytest.mark.anyio


def _row(label: str, *, token: str | None = None) -> dict[str, Any]:
    raw = webhook_body(item_id=label)
    text_, document = intake.parse(raw)
    verified = VerifiedWebhook(
        issued_at=time.time(), token_sha256=token or hashlib.sha256(label.encode()).hexdigest()
    )
    return intake.inbox_row(raw=raw, text=text_, document=document, verified=verified)


async def _items(database: Database) -> list[str | None]:
    async with database.transaction() as session:
        return list(await session.scalars(select(WebhookEvent.item_id).order_by(WebhookEvent.id)))


async def test_deliveries_arriving_together_are_one_commit(database: Database) -> None:
    writer = InboxWriter(database, max_pending=100)
    commits: list[int] = []

    def count(_connection: Connection) -> None:
        commits.append(1)

    event.listen(database.engine.sync_engine, "commit", count)
    try:
        stored = await asyncio.gather(*(writer.store(_row(f"item-{n}")) for n in range(20)))
    finally:
        event.remove(database.engine.sync_engine, "commit", count)
    assert len(commits) == 1
    assert [event.item_id for event in stored if event is not None] == [
        f"item-{n}" for n in range(20)
    ]
    assert await _items(database) == [f"item-{n}" for n in range(20)]
    assert writer.pending == 0


async def test_a_failing_batch_fails_only_its_own_deliveries(
    database: Database, database_url: str
) -> None:
    # Six deliveries at once, three to a batch: the first batch's COMMIT fails for real (its
    # PostgreSQL session killed; on SQLite a foreign key left violated, also on the retry of each
    # of its rows one by one); the second batch commits.
    writer = InboxWriter(database, max_pending=100, max_batch=3)
    faults = CommitFaults(database.engine, database_url)
    faults.fail_next(1 if database.dialect == "postgresql" else 4)
    try:
        outcomes = await asyncio.gather(
            *(writer.store(_row(f"item-{n}")) for n in range(6)), return_exceptions=True
        )
    finally:
        faults.close()
    failed, stored = outcomes[:3], outcomes[3:]
    assert all(isinstance(outcome, SQLAlchemyError) for outcome in failed), failed
    if database.dialect == "postgresql":
        assert all(database_unavailable(outcome) for outcome in failed)  # type: ignore[arg-type]
    assert [getattr(outcome, "item_id", None) for outcome in stored] == [
        "item-3",
        "item-4",
        "item-5",
    ]
    assert await _items(database) == ["item-3", "item-4", "item-5"]
    # The writer goes on: the failed deliveries, redelivered, are stored.
    again = await asyncio.gather(*(writer.store(_row(f"item-{n}")) for n in range(3)))
    assert all(event is not None for event in again)
    assert sorted(item or "" for item in await _items(database)) == [f"item-{n}" for n in range(6)]


async def test_one_token_twice_in_one_batch_is_one_row(database: Database) -> None:
    writer = InboxWriter(database, max_pending=100)
    token = hashlib.sha256(b"one signed token").hexdigest()
    first, second, other = await asyncio.gather(
        writer.store(_row("item-a", token=token)),
        writer.store(_row("item-a", token=token)),
        writer.store(_row("item-b")),
    )
    assert first is not None
    assert first.item_id == "item-a"
    assert second is None  # a replay: acknowledged, nothing added
    assert other is not None
    assert await _items(database) == ["item-a", "item-b"]
    # And against a row committed earlier.
    assert await writer.store(_row("item-a", token=token)) is None
    assert await _items(database) == ["item-a", "item-b"]


SQLITE_COMMIT_SECONDS = 10.0


@contextmanager
def _commits_held(database: Database, database_url: str) -> Iterator[Callable[[], None]]:
    """Webhook commits held until the returned function is called: on PostgreSQL by another
    session locking the inbox table; on SQLite (whose writers waiting on a lock may be refused
    at once instead) every commit takes `SQLITE_COMMIT_SECONDS` longer."""
    if database.dialect == "postgresql":
        engine = create_engine(sync_url(database_url))
        with engine.connect() as connection:
            connection.execute(text("LOCK TABLE plaid_webhook_events IN EXCLUSIVE MODE"))
            yield connection.rollback
            connection.rollback()
        engine.dispose()
        return
    faults = CommitFaults(database.engine, database_url)
    faults.delay_commits(SQLITE_COMMIT_SECONDS)
    try:
        yield lambda: faults.delay_commits(0)
    finally:
        faults.close()


async def test_beyond_the_pending_bound_a_webhook_is_answered_503_at_once(
    hooks: Hooks, signing_key: SigningKey, database_url: str
) -> None:
    current = hooks.api.services.settings
    services = hooks.api.use(
        make_settings(
            database_url=database_url,
            plaid_api_host=current.plaid_host,
            var_dir=current.var_dir,
            plaid_max_retries=0,
            webhook_max_pending=1,
        )
    )
    with _commits_held(services.database, database_url) as release:
        held = webhook_body(item_id="item-held")
        first = asyncio.ensure_future(hooks.post(held, signing_key.sign(held)))
        deadline = time.monotonic() + 30
        while services.webhook_inbox.pending < 1:  # the first waits for its commit
            assert time.monotonic() < deadline, "the first webhook never reached the inbox"
            assert not first.done(), first.result().text
            await asyncio.sleep(0.01)

        refused = webhook_body(item_id="item-refused")
        response = await hooks.post(refused, signing_key.sign(refused))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        answer = response.json()
        assert answer["error"]["code"] == WebhookBacklog.code
        assert answer["error"]["retryAfter"] == 1
        assert answer["requestId"] == response.headers["X-Request-ID"]
        release()  # the first commits and is answered 200
        answered = await first
    assert answered.status_code == 200
    assert [row.item_id for row in await hooks.stored()] == ["item-held"]


async def test_the_writer_refuses_beyond_its_bound_without_queueing(database: Database) -> None:
    writer = InboxWriter(database, max_pending=2)
    waiting = [asyncio.ensure_future(writer.store(_row(f"item-{n}"))) for n in range(2)]
    await asyncio.sleep(0)  # both handed to the writer
    assert writer.pending == 2
    with pytest.raises(WebhookBacklog) as refused:
        await writer.store(_row("item-late"))
    assert refused.value.status == 503
    assert refused.value.retry_after == 1
    await asyncio.gather(*waiting)
    assert writer.pending == 0
    assert await _items(database) == ["item-0", "item-1"]
    async with database.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 2
