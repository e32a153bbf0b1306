"""A PostgreSQL database of a benchmark's own, migrated, dropped afterwards.

The server comes from BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the local default.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from plaid_bridge.db import sync_url
from plaid_bridge.ops import migrate

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class BenchDatabase:
    url: str
    """SQLAlchemy URL (the service's DATABASE_URL)."""
    libpq_url: str
    """The same for psycopg directly."""


@contextmanager
def bench_database() -> Iterator[BenchDatabase]:
    """Create and migrate a database of its own; drop it on the way out."""
    base = sync_url(
        os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL
    )
    name = f"pb_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    libpq_url = make_url(url).set(drivername="postgresql").render_as_string(False)
    try:
        migrate.upgrade(url)
        yield BenchDatabase(url, libpq_url)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
