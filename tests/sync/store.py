"""Reading both sides of a sync: the emulator's ground truth and what the service stored."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Text, cast, func, select

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database
from plaid_bridge.services import Services
from plaid_bridge.sync.models import SyncRequest, SyncRun
from plaid_bridge.sync.queue import process_due
from plaid_bridge.transactions.models import PlaidTransaction

Transactions = dict[str, dict[str, Any]]


async def ledger(control: httpx.AsyncClient, item_id: str) -> Transactions:
    """The emulator's transactions for the Item, as a complete sync would leave them."""
    response = await control.get("/emulator/ledger", params={"item_id": item_id})
    response.raise_for_status()
    document = json.loads(response.text, parse_float=Decimal)
    return {txn["transaction_id"]: txn for txn in document["transactions"]}


async def stored(database: Database, item_id: str) -> Transactions:
    """The Item's live stored transactions: Plaid's objects read exactly from the stored JSON
    text, with the amount from its exact column; also checks that the typed columns agree with
    the raw object."""
    async with database.transaction() as session:
        rows = (
            await session.execute(
                select(PlaidTransaction, cast(PlaidTransaction.raw, Text).label("raw_text"))
                .join(PlaidConnection, PlaidConnection.id == PlaidTransaction.connection_id)
                .where(PlaidConnection.item_id == item_id, PlaidTransaction.removed.is_(False))
            )
        ).all()
    result: Transactions = {}
    for row, raw_text in rows:
        raw = json.loads(raw_text, parse_float=Decimal)
        assert row.transaction_id == raw["transaction_id"]
        assert row.account_id == raw["account_id"]
        assert row.pending == raw["pending"]
        assert row.date.isoformat() == raw["date"]
        assert row.pending_transaction_id == raw["pending_transaction_id"]
        assert row.name == raw["name"]
        result[row.transaction_id] = {**raw, "amount": row.amount}
    return result


async def cursor_of(database: Database, item_id: str) -> str | None:
    async with database.transaction() as session:
        return await session.scalar(
            select(PlaidConnection.cursor).where(PlaidConnection.item_id == item_id)
        )


async def runs(database: Database, item_id: str, outcome: str | None = None) -> list[SyncRun]:
    async with database.transaction() as session:
        statement = select(SyncRun).where(SyncRun.item_id == item_id).order_by(SyncRun.id)
        if outcome is not None:
            statement = statement.where(SyncRun.outcome == outcome)
        return list((await session.scalars(statement)).all())


async def pending_requests(database: Database) -> int:
    async with database.transaction() as session:
        return await session.scalar(select(func.count()).select_from(SyncRequest)) or 0


async def drain(services: Services, *, worker_id: str = "test-worker", passes: int = 20) -> None:
    """Run the queue until no request is left (bounded: a test never hangs on it)."""
    for _ in range(passes):
        await process_due(services, worker_id=worker_id, limit=10)
        if await pending_requests(services.database) == 0:
            return
    raise AssertionError("sync requests still pending after the queue was drained")
