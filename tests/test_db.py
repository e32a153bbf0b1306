"""The migrated schema matches the models and stores exact values, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from plaid_bridge.db import Database
from plaid_bridge.ops import migrate
from plaid_bridge.ops.migrate import metadata

pytestmark = pytest.mark.anyio


async def test_migrations_match_models(database: Database) -> None:
    async with database.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []
    assert await migrate.current_revision(database.engine) == migrate.head_revision()


async def test_money_and_time_round_trip_exactly(database: Database) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with database.transaction() as session:
        connection = PlaidConnection(org_id="o", user_id="u", item_id="item-1", status="ACTIVE")
        connection.accounts.append(
            PlaidAccount(
                account_id="acc-1",
                name="Checking",
                type="depository",
                balance_current=Decimal("0.1") + Decimal("0.2"),
                raw={"balances": {"current": Decimal("0.30")}},
                balances_updated_at=when,
            )
        )
        session.add(connection)
    async with database.transaction() as session:
        account = (await session.scalars(select(PlaidAccount))).one()
    assert account.balance_current == Decimal("0.3")
    assert account.balances_updated_at == when
    assert account.raw == {"balances": {"current": 0.3}}


async def test_failed_transaction_leaves_nothing(database: Database) -> None:
    async def fail_after_flush() -> None:
        async with database.transaction() as session:
            session.add(PlaidConnection(org_id="o", user_id="u", item_id="item-2"))
            await session.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fail_after_flush()
    async with database.transaction() as session:
        assert (await session.scalars(select(PlaidConnection))).all() == []
