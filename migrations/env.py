"""Alembic environment: runs migrations with a synchronous driver for the configured database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from plaid_bridge.db import ensure_sqlite_dir, sync_url
from plaid_bridge.ops.migrate import metadata

config = context.config


def _database_url() -> str:
    configured = config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    from plaid_bridge.config import load_settings

    return load_settings().database_url


url = _database_url()


def run_migrations_offline() -> None:
    context.configure(url=str(sync_url(url)), target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    ensure_sqlite_dir(url)
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(sync_url(url), poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
