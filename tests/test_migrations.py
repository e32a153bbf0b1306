"""The latest migration goes down and up again on both databases, keeping the stored rows and
ending at the models."""

from __future__ import annotations

import datetime as dt

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, insert, inspect, select, text

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import sync_url
from plaid_bridge.ops import migrate
from plaid_bridge.ops.migrate import metadata

# Plaid's text as received: spacing and digits that a parse and re-encoding would not keep.
RAW = '{"transaction_id": "t1", "amount": 1.50, "name": "Caf\\u00e9"}'
CHANGE_COLUMNS = ["connection_id", "change_seq", "transaction_id"]


def _indexes(engine: Engine) -> dict[str, list[str | None]]:
    with engine.connect() as connection:
        found = inspect(connection).get_indexes("plaid_transactions")
    return {str(index["name"]): list(index["column_names"]) for index in found}


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


def _stored_raw(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.scalar(text("SELECT CAST(raw AS TEXT) FROM plaid_transactions")))


def test_the_latest_migration_goes_down_and_up_again_keeping_rows(database_url: str) -> None:
    url = sync_url(database_url).render_as_string(hide_password=False)
    config = migrate.alembic_config(url)
    engine = create_engine(url)
    try:
        assert _indexes(engine)["ix_plaid_transactions_changed"] == CHANGE_COLUMNS

        command.downgrade(config, "0006")
        before = _indexes(engine)
        assert "ix_plaid_transactions_changed" not in before
        assert before["ix_plaid_transactions_connection_id_change_seq_transaction_id"] == (
            CHANGE_COLUMNS
        )
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as connection:
            connection.execute(insert(PlaidConnection).values(org_id="o", user_id="u", item_id="i"))
            connection_id = connection.scalar(select(PlaidConnection.id))
            connection.execute(
                text(
                    "INSERT INTO plaid_transactions (connection_id, transaction_id, account_id, "
                    "amount, date, pending, raw, removed, change_seq, created_seq, created_at, "
                    "updated_at) VALUES (:connection_id, 't1', 'a1', 1.5, :day, false, :raw, "
                    "false, 1, 1, :now, :now)"
                ),
                {"connection_id": connection_id, "day": now.date(), "raw": RAW, "now": now},
            )

        command.upgrade(config, "head")
        after = _indexes(engine)
        assert "ix_plaid_transactions_connection_id_change_seq_transaction_id" not in after
        assert after["ix_plaid_transactions_changed"] == CHANGE_COLUMNS
        assert _stored_raw(engine) == RAW
        assert _diff(engine) == []

        command.downgrade(config, "0006")
        assert _stored_raw(engine) == RAW
    finally:
        engine.dispose()
