"""The inbox applied in batches: rows of different Items side by side, each Item's rows in the
order received; and an external worker woken by PostgreSQL notifications, not its poll."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from sqlalchemy import select, text

from plaid_bridge import wakeups
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database, utcnow
from plaid_bridge.webhooks.models import WebhookEvent
from plaid_bridge.worker import Worker, stop_within
from tests.conftest import Api
from tests.waiting import eventually
from tests.webhooks.conftest import Hooks, SigningKey, webhook_body

pytestmark = pytest.mark.anyio
WAIT_SECONDS = 60.0


async def link(database: Database, item_ids: list[str]) -> None:
    async with database.transaction() as session:
        session.add_all(
            PlaidConnection(org_id="o1", user_id="u1", item_id=item_id, last_synced_at=utcnow())
            for item_id in item_ids
        )


async def store(database: Database, item_ids: list[str]) -> list[int]:
    """One NEW_ACCOUNTS_AVAILABLE per entry of `item_ids`, in that order."""
    rows = []
    for item_id in item_ids:
        body = json.dumps(
            {"webhook_type": "ITEM", "webhook_code": "NEW_ACCOUNTS_AVAILABLE", "item_id": item_id}
        )
        rows.append(
            WebhookEvent(
                webhook_type="ITEM",
                webhook_code="NEW_ACCOUNTS_AVAILABLE",
                item_id=item_id,
                body=body,
                body_sha256=hashlib.sha256(body.encode()).hexdigest(),
            )
        )
    async with database.transaction() as session:
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


async def statuses(database: Database) -> dict[int, str]:
    async with database.transaction() as session:
        return dict((await session.execute(select(WebhookEvent.id, WebhookEvent.status))).all())


async def test_each_items_rows_are_applied_in_order_while_items_go_side_by_side(
    api: Api,
) -> None:
    database = api.services.database
    items = [f"item-{n}" for n in range(4)]
    await link(database, items)
    await store(database, items * 5)  # interleaved, as deliveries come
    worker = Worker(api.services, worker_id="batch", inbox_concurrency=8)

    batches = []
    while handled := await worker.process_inbox():
        batches.append(handled)

    assert sum(batches) == 20
    async with database.transaction() as session:
        rows = (
            await session.execute(
                select(
                    WebhookEvent.item_id, WebhookEvent.status, WebhookEvent.processed_at
                ).order_by(WebhookEvent.id)
            )
        ).all()
    assert {status for _, status, _ in rows} == {"DONE"}
    for item_id in items:
        applied = [processed for item, _, processed in rows if item == item_id]
        assert None not in applied
        assert applied == sorted(applied)  # type: ignore[type-var]
        assert len(set(applied)) == len(applied)


async def test_an_item_held_up_does_not_hold_up_the_others(api: Api) -> None:
    if api.services.database.dialect != "postgresql":
        pytest.skip("SQLite has one writer: its worker applies one row at a time")
    database = api.services.database
    await link(database, ["held", "free-1", "free-2"])
    held, *free = await store(database, ["held", "free-1", "free-2"])
    worker = Worker(api.services, worker_id="batch", inbox_concurrency=4)

    async with database.transaction() as blocker:
        # The apply of the held Item's row waits for this lock on its connection.
        await blocker.execute(
            select(PlaidConnection).where(PlaidConnection.item_id == "held").with_for_update()
        )
        applying = asyncio.create_task(worker.process_inbox())

        async def others_applied() -> bool:
            found = await statuses(database)
            return all(found[event_id] == "DONE" for event_id in free)

        await eventually(others_applied, "the other Items' rows", within=WAIT_SECONDS)
        assert (await statuses(database))[held] == "PROCESSING"
    assert await applying == 3
    assert (await statuses(database))[held] == "DONE"


async def test_a_stored_webhook_wakes_an_external_worker_at_once(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    services = hooks.api.services
    if services.database.dialect != "postgresql":
        pytest.skip("SQLite runs its worker in the API process, woken by an in-process event")
    # A worker of its own, as another process would be: only a notification can wake it.
    worker = Worker(services, worker_id="external", poll_interval=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(stop))
    try:

        async def listening() -> bool:
            # The listener's connection ran its last LISTEN: a notification now reaches it.
            async with services.database.transaction() as session:
                found = await session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query = :last"
                    ),
                    {"last": f"LISTEN {wakeups.SYNC}"},
                )
            return worker.last_inbox_pass is not None and bool(found)

        await eventually(listening, "the worker listening", within=WAIT_SECONDS)
        body = webhook_body("ITEM", "NEW_ACCOUNTS_AVAILABLE", "item-unknown")
        assert (await hooks.post(body, signing_key.sign(body))).status_code == 200
        [event] = await hooks.stored()

        async def applied() -> bool:
            return (await statuses(services.database))[event.id] == "DONE"

        await eventually(applied, "the webhook applied", within=WAIT_SECONDS)
    finally:
        await stop_within(task, stop, 10.0)
