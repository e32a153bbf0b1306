"""Staging one update's pages in the database, then applying them with set-based statements.

Pages go into a temporary table as they arrive, so memory holds one page at a time however large
the update; the apply step is two statements whatever the number of rows. PostgreSQL stages with
binary COPY into a table dropped at commit (it lives and dies with the sync's transaction);
SQLite stages with executemany into a connection-private TEMP table, which takes no lock on the
main database until the apply step writes.

Applying stamps every row it changes with the connection's new sequence number (`change_seq`, and
`created_seq` on first insert), which the change feed reads. Re-sent rows that did not change are
left alone (an IS DISTINCT FROM guard), so a repeated sync neither bloats the table nor shows up
in the feed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import msgspec
from sqlalchemy import BigInteger, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from plaid_bridge.db import dialect_name
from plaid_bridge.plaid.types import SyncPage, Transaction
from plaid_bridge.transactions.models import PlaidTransaction

STAGE = "plaid_sync_stage"
UPSERTED, REMOVED = "U", "R"

# Stored Plaid fields, in staging and target order; JSON ones are staged as text.
DATA_COLUMNS = (
    "account_id",
    "amount",
    "iso_currency_code",
    "unofficial_currency_code",
    "date",
    "authorized_date",
    "datetime",
    "name",
    "merchant_name",
    "pending",
    "pending_transaction_id",
    "category",
    "payment_channel",
    "raw",
)
JSON_COLUMNS = frozenset({"category", "raw"})


def _category(transaction: Transaction) -> str | None:
    category = transaction.category
    return None if category is None else msgspec.json.encode(category).decode()


class Stage(Protocol):
    """One update's pages, staged inside the sync's database session."""

    async def add(self, page: SyncPage) -> None:
        """Stage a page's added, modified and removed transactions (a later page wins)."""

    async def clear(self) -> None:
        """Forget everything staged (a restart of the update from its first cursor)."""

    async def apply(
        self, session: AsyncSession, *, connection_id: str, seq: int, now: dt.datetime
    ) -> None:
        """Upsert the staged transactions and soft-remove the removed ones, stamped `seq`."""

    async def close(self) -> None:
        """Release the staging table (a no-op where the transaction's end drops it)."""


async def open_stage(session: AsyncSession) -> Stage:
    """A fresh, empty stage on the session's connection, for its database."""
    if dialect_name(session) == "postgresql":
        return await _PostgresStage.open(session)
    return await _SqliteStage.open(session)


def _statements(dialect: str, stage: str) -> tuple[TextClause, TextClause]:
    """The upsert and the soft-remove, from `stage` into plaid_transactions."""
    postgres = dialect == "postgresql"
    distinct = "IS DISTINCT FROM" if postgres else "IS NOT"

    def source(column: str) -> str:
        return f"s.{column}::json" if postgres and column in JSON_COLUMNS else f"s.{column}"

    def compared(table: str, column: str) -> str:
        return (
            f"{table}.{column}::text"
            if postgres and column in JSON_COLUMNS
            else (f"{table}.{column}")
        )

    columns = ", ".join(DATA_COLUMNS)
    selected = ", ".join(source(column) for column in DATA_COLUMNS)
    updates = ", ".join(f"{column} = excluded.{column}" for column in DATA_COLUMNS)
    current = ", ".join(compared("plaid_transactions", column) for column in DATA_COLUMNS)
    incoming = ", ".join(compared("excluded", column) for column in DATA_COLUMNS)
    upsert = text(
        f"INSERT INTO plaid_transactions (connection_id, transaction_id, {columns}, removed, "
        "change_seq, created_seq, created_at, updated_at) "
        f"SELECT :connection_id, s.transaction_id, {selected}, false, :seq, :seq, :now, :now "
        f"FROM {stage} AS s WHERE s.kind = '{UPSERTED}' "
        "ON CONFLICT (transaction_id) DO UPDATE SET connection_id = excluded.connection_id, "
        f"{updates}, removed = false, change_seq = excluded.change_seq, "
        "updated_at = excluded.updated_at "
        f"WHERE (plaid_transactions.connection_id, {current}, plaid_transactions.removed) "
        f"{distinct} (excluded.connection_id, {incoming}, false)"
    )
    remove = text(
        "UPDATE plaid_transactions SET removed = true, change_seq = :seq, updated_at = :now "
        "WHERE connection_id = :connection_id AND removed = false AND transaction_id IN "
        f"(SELECT s.transaction_id FROM {stage} AS s WHERE s.kind = '{REMOVED}')"
    )
    table = PlaidTransaction.__table__.c
    params = (
        bindparam("connection_id", type_=String()),
        bindparam("seq", type_=BigInteger()),
        bindparam("now", type_=table.created_at.type),
    )
    return upsert.bindparams(*params), remove.bindparams(*params)


async def _run_apply(
    session: AsyncSession, dialect: str, stage: str, connection_id: str, seq: int, now: dt.datetime
) -> None:
    upsert, remove = _statements(dialect, stage)
    params = {"connection_id": connection_id, "seq": seq, "now": now}
    await session.execute(upsert, params)
    await session.execute(remove, params)


_PG_TYPES = (
    "int8",
    "text",
    "text",
    "text",
    "numeric",
    "text",
    "text",
    "date",
    "date",
    "timestamptz",
    "text",
    "text",
    "bool",
    "text",
    "text",
    "text",
    "text",
)


class _PostgresStage:
    """Binary COPY into a temporary table that the transaction's end drops."""

    def __init__(self, session: AsyncSession, driver: Any) -> None:
        self._session = session
        self._driver = driver
        self._position = 0
        self._seen: set[str] = set()
        self._duplicates = False

    @classmethod
    async def open(cls, session: AsyncSession) -> _PostgresStage:
        await session.execute(
            text(
                f"CREATE TEMP TABLE {STAGE} (pos bigint NOT NULL, kind text NOT NULL, "
                "transaction_id text NOT NULL, account_id text, amount numeric, "
                "iso_currency_code text, unofficial_currency_code text, date date, "
                "authorized_date date, datetime timestamptz, name text, merchant_name text, "
                "pending boolean, pending_transaction_id text, category text, "
                "payment_channel text, raw text) ON COMMIT DROP"
            )
        )
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        return cls(session, raw.driver_connection)

    def _note(self, transaction_id: str) -> int:
        if transaction_id in self._seen:
            self._duplicates = True
        else:
            self._seen.add(transaction_id)
        self._position += 1
        return self._position

    async def add(self, page: SyncPage) -> None:
        async with self._driver.cursor() as cursor:
            async with cursor.copy(
                f"COPY {STAGE} (pos, kind, transaction_id, {', '.join(DATA_COLUMNS)}) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_PG_TYPES)
                for transactions in (page.added, page.modified):
                    for t in transactions:
                        await copy.write_row(
                            (
                                self._note(t.transaction_id),
                                UPSERTED,
                                t.transaction_id,
                                t.account_id,
                                t.amount,
                                t.iso_currency_code,
                                t.unofficial_currency_code,
                                t.date,
                                t.authorized_date,
                                t.datetime,
                                t.name,
                                t.merchant_name,
                                t.pending,
                                t.pending_transaction_id,
                                _category(t),
                                t.payment_channel,
                                t.raw_json,
                            )
                        )
                for r in page.removed:
                    await copy.write_row(
                        (self._note(r.transaction_id), REMOVED, r.transaction_id, r.account_id)
                        + (None,) * (len(DATA_COLUMNS) - 1)
                    )

    async def clear(self) -> None:
        await self._session.execute(text(f"TRUNCATE {STAGE}"))
        self._position = 0
        self._seen.clear()
        self._duplicates = False

    async def apply(
        self, session: AsyncSession, *, connection_id: str, seq: int, now: dt.datetime
    ) -> None:
        if self._duplicates:
            # Plaid sends each transaction once per update; should it not, the latest page wins.
            await session.execute(
                text(
                    f"DELETE FROM {STAGE} AS a USING {STAGE} AS b "
                    "WHERE a.transaction_id = b.transaction_id AND a.pos < b.pos"
                )
            )
        await session.execute(text(f"ANALYZE {STAGE}"))
        await _run_apply(session, "postgresql", STAGE, connection_id, seq, now)

    async def close(self) -> None:
        self._seen.clear()


_SQLITE_STAGE = f"temp.{STAGE}"


def _sqlite_datetime(value: dt.datetime | None) -> str | None:
    # The text form SQLAlchemy's SQLite DateTime stores (UTC, no offset), so the ORM reads it.
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _SqliteStage:
    """executemany into a TEMP table keyed by transaction id (a later page replaces the row)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        columns = ", ".join(DATA_COLUMNS)
        values = ", ".join(f":{column}" for column in DATA_COLUMNS)
        self._insert = text(
            f"INSERT OR REPLACE INTO {_SQLITE_STAGE} (transaction_id, kind, {columns}) "
            f"VALUES (:transaction_id, :kind, {values})"
        )

    @classmethod
    async def open(cls, session: AsyncSession) -> _SqliteStage:
        # TEMP tables outlive a transaction on SQLite: a stage left by a cancelled run on this
        # pooled connection is emptied here.
        await session.execute(
            text(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (transaction_id TEXT PRIMARY KEY, "
                "kind TEXT NOT NULL, account_id TEXT, amount REAL, iso_currency_code TEXT, "
                "unofficial_currency_code TEXT, date TEXT, authorized_date TEXT, datetime TEXT, "
                "name TEXT, merchant_name TEXT, pending INTEGER, pending_transaction_id TEXT, "
                "category TEXT, payment_channel TEXT, raw TEXT)"
            )
        )
        stage = cls(session)
        await stage.clear()
        return stage

    async def add(self, page: SyncPage) -> None:
        rows: list[dict[str, Any]] = []
        for transactions in (page.added, page.modified):
            for t in transactions:
                rows.append(
                    {
                        "transaction_id": t.transaction_id,
                        "kind": UPSERTED,
                        "account_id": t.account_id,
                        "amount": float(t.amount),  # SQLite stores NUMERIC as REAL regardless
                        "iso_currency_code": t.iso_currency_code,
                        "unofficial_currency_code": t.unofficial_currency_code,
                        "date": t.date.isoformat(),
                        "authorized_date": t.authorized_date and t.authorized_date.isoformat(),
                        "datetime": _sqlite_datetime(t.datetime),
                        "name": t.name,
                        "merchant_name": t.merchant_name,
                        "pending": int(t.pending),
                        "pending_transaction_id": t.pending_transaction_id,
                        "category": _category(t),
                        "payment_channel": t.payment_channel,
                        "raw": t.raw_json,
                    }
                )
        for r in page.removed:
            row: dict[str, Any] = dict.fromkeys(DATA_COLUMNS)
            row.update(transaction_id=r.transaction_id, kind=REMOVED, account_id=r.account_id)
            rows.append(row)
        if rows:
            await self._session.execute(self._insert, rows)

    async def clear(self) -> None:
        await self._session.execute(text(f"DELETE FROM {_SQLITE_STAGE}"))

    async def apply(
        self, session: AsyncSession, *, connection_id: str, seq: int, now: dt.datetime
    ) -> None:
        await _run_apply(session, "sqlite", _SQLITE_STAGE, connection_id, seq, now)

    async def close(self) -> None:
        # The (empty) table stays with the pooled connection; `open` reuses it.
        await self.clear()
