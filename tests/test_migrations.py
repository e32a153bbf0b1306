"""The latest migration goes down and up again on both databases, ending at the models."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from plaid_bridge.db import sync_url
from plaid_bridge.ops import migrate
from plaid_bridge.ops.migrate import metadata


def _indexes(url: str) -> dict[str, list[str | None]]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            found = inspect(connection).get_indexes("plaid_transactions")
    finally:
        engine.dispose()
    return {str(index["name"]): list(index["column_names"]) for index in found}


def _diff(url: str) -> list[object]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), metadata))
    finally:
        engine.dispose()


def test_the_change_index_migration_goes_down_and_up_again(database_url: str) -> None:
    config = migrate.alembic_config(str(sync_url(database_url).render_as_string(False)))
    columns = ["connection_id", "change_seq", "transaction_id"]
    assert _indexes(database_url)["ix_plaid_transactions_changed"] == columns

    command.downgrade(config, "0006")
    before = _indexes(database_url)
    assert "ix_plaid_transactions_changed" not in before
    assert before["ix_plaid_transactions_connection_id_change_seq_transaction_id"] == columns

    command.upgrade(config, "head")
    after = _indexes(database_url)
    assert "ix_plaid_transactions_connection_id_change_seq_transaction_id" not in after
    assert after["ix_plaid_transactions_changed"] == columns
    assert _diff(database_url) == []
