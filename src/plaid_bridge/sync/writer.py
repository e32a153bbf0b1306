"""Writing one sync update into the transaction store, inside the sync's database transaction.

Every row the update changes is stamped with the connection's new sequence number (`change_seq`,
and `created_seq` on first insert), which the change feed reads. A re-sent row that did not
change is left alone (an IS DISTINCT FROM guard), so a repeated sync neither bloats the table nor
shows up in the feed. A later page wins over an earlier one; within a page a removal wins over a
modification, and a modification over an addition.

PostgreSQL writes each page through as it arrives, while the next page is being fetched:
transactions the store has never seen go straight into `plaid_transactions` with binary COPY
(the bulk of a first sync); the others are COPYed into a temporary table and upserted from it with
one statement, and removals are one UPDATE. A savepoint taken when the update opens lets a
restart, or an update that must not land, undo all of it; nobody else sees any of it before the
sync's transaction commits, and the Item's advisory lock keeps two runs from writing at once.

SQLite has one writer for the whole database, so it stages pages in a connection-private TEMP
table (no lock on the main database) and applies them together at the end: a long fetch never
holds the writer lock.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
_SAVEPOINT = "plaid_sync_update"

# Stored Plaid fields, in staging and target order; JSON ones travel as text.
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
# Travelling as text into json columns (checked by the server); `raw` is a text column: Plaid's
# object as received, already checked by the service's own parse, is not parsed again.
JSON_COLUMNS = frozenset({"category"})
# PostgreSQL wire types of DATA_COLUMNS; json's binary form is its text.
_DATA_TYPES = (
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


@dataclass(frozen=True, slots=True)
class Target:
    """Where an update goes: its connection, the sequence number it stamps, and its time."""

    connection_id: str
    seq: int
    now: dt.datetime


class UpdateWriter(Protocol):
    """One update's pages, written inside the sync's database session."""

    seconds: float
    """Time spent writing so far (pages, and the final apply)."""

    async def add(self, page: SyncPage) -> None:
        """Take a page's added, modified and removed transactions."""

    async def restart(self) -> None:
        """Undo everything taken (the update starts again from its first cursor)."""

    async def finish(self) -> None:
        """Complete the update in the session; the caller commits."""

    async def discard(self) -> None:
        """Undo everything taken; the caller may still commit other writes."""


async def open_writer(session: AsyncSession, target: Target) -> UpdateWriter:
    """A writer for one update on the session's connection, for its database."""
    if dialect_name(session) == "postgresql":
        return await _PostgresWriter.open(session, target)
    return await _SqliteWriter.open(session, target)


def _latest(page: SyncPage) -> tuple[list[Transaction], list[str]]:
    """The page's upserts and removals, one entry per transaction id."""
    latest: dict[str, Transaction | None] = {}
    for transaction in page.added:
        latest[transaction.transaction_id] = transaction
    for transaction in page.modified:
        latest[transaction.transaction_id] = transaction
    for removed in page.removed:
        latest[removed.transaction_id] = None
    upserts = [t for t in latest.values() if t is not None]
    return upserts, [key for key, t in latest.items() if t is None]


def _data(t: Transaction) -> tuple[Any, ...]:
    """A transaction's DATA_COLUMNS values."""
    category = None if t.category is None else msgspec.json.encode(t.category).decode()
    return (
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
        category,
        t.payment_channel,
        t.raw_json,
    )


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
            else f"{table}.{column}"
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


async def _apply_stage(session: AsyncSession, stage: str, target: Target) -> None:
    upsert, remove = _statements(dialect_name(session), stage)
    params = {"connection_id": target.connection_id, "seq": target.seq, "now": target.now}
    await session.execute(upsert, params)
    await session.execute(remove, params)


# The columns of a new row of plaid_transactions as COPY writes them, and their wire types.
STORE_COLUMNS = (
    f"connection_id, transaction_id, {', '.join(DATA_COLUMNS)}, "
    "removed, change_seq, created_seq, created_at, updated_at"
)
STORE_TYPES = ("text", "text", *_DATA_TYPES, "bool", "int8", "int8", "timestamptz", "timestamptz")
_STAGE_TYPES = ("text", "text", *_DATA_TYPES)


class _PostgresWriter:
    """Pages written through as they come, under a savepoint that can undo the update."""

    def __init__(self, session: AsyncSession, driver: Any, target: Target) -> None:
        self._session = session
        self._driver = driver
        self._target = target
        self.seconds = 0.0

    @classmethod
    async def open(cls, session: AsyncSession, target: Target) -> _PostgresWriter:
        await session.execute(
            text(
                f"CREATE TEMP TABLE {STAGE} (transaction_id text PRIMARY KEY, kind text NOT NULL, "
                "account_id text, amount numeric, iso_currency_code text, "
                "unofficial_currency_code text, date date, authorized_date date, "
                "datetime timestamptz, name text, merchant_name text, pending boolean, "
                "pending_transaction_id text, category text, payment_channel text, raw text) "
                "ON COMMIT DROP"
            )
        )
        await session.execute(text(f"SAVEPOINT {_SAVEPOINT}"))
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        return cls(session, raw.driver_connection, target)

    async def add(self, page: SyncPage) -> None:
        started = time.monotonic()
        upserts, removed = _latest(page)
        known = await self._stored(upserts)
        new = [t for t in upserts if t.transaction_id not in known]
        if new:
            await self._insert(new)
        if len(new) < len(upserts) or removed:
            await self._stage([t for t in upserts if t.transaction_id in known], removed)
            await _apply_stage(self._session, STAGE, self._target)
            await self._session.execute(text(f"TRUNCATE {STAGE}"))
        self.seconds += time.monotonic() - started

    async def _stored(self, upserts: Sequence[Transaction]) -> set[str]:
        """Which of these transactions the store already has (under any connection)."""
        if not upserts:
            return set()
        async with self._driver.cursor() as cursor:
            # One probe of the unique index per id, whatever the planner believes of the table's
            # size (a plain join or `= ANY` is planned as a scan of a table that just grew).
            await cursor.execute(
                "SELECT ids.id FROM unnest(%b::text[]) AS ids (id), LATERAL (SELECT 1 "
                "FROM plaid_transactions AS t WHERE t.transaction_id = ids.id LIMIT 1) AS stored",
                ([t.transaction_id for t in upserts],),
            )
            return {row[0] for row in await cursor.fetchall()}

    async def _insert(self, transactions: Sequence[Transaction]) -> None:
        """Binary COPY of new transactions straight into the store."""
        target = self._target
        head = (target.connection_id,)
        tail = (False, target.seq, target.seq, target.now, target.now)
        async with self._driver.cursor() as cursor:
            statement = f"COPY plaid_transactions ({STORE_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            async with cursor.copy(statement) as copy:
                copy.set_types(STORE_TYPES)
                for t in transactions:
                    await copy.write_row((*head, t.transaction_id, *_data(t), *tail))

    async def _stage(self, upserts: Sequence[Transaction], removed: Sequence[str]) -> None:
        blank = (None,) * len(DATA_COLUMNS)
        async with self._driver.cursor() as cursor:
            statement = (
                f"COPY {STAGE} (transaction_id, kind, {', '.join(DATA_COLUMNS)}) "
                "FROM STDIN (FORMAT BINARY)"
            )
            async with cursor.copy(statement) as copy:
                copy.set_types(_STAGE_TYPES)
                for t in upserts:
                    await copy.write_row((t.transaction_id, UPSERTED, *_data(t)))
                for transaction_id in removed:
                    await copy.write_row((transaction_id, REMOVED, *blank))

    async def restart(self) -> None:
        await self._session.execute(text(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}"))

    async def finish(self) -> None:
        await self._session.execute(text(f"RELEASE SAVEPOINT {_SAVEPOINT}"))

    async def discard(self) -> None:
        await self._session.execute(text(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}"))


_SQLITE_STAGE = f"temp.{STAGE}"


def _sqlite_datetime(value: dt.datetime | None) -> str | None:
    # The text form SQLAlchemy's SQLite DateTime stores (UTC, no offset), so the ORM reads it.
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _SqliteWriter:
    """Pages staged in a TEMP table keyed by transaction id (a later page replaces the row),
    applied together by `finish`."""

    def __init__(self, session: AsyncSession, target: Target) -> None:
        self._session = session
        self._target = target
        self.seconds = 0.0
        columns = ", ".join(DATA_COLUMNS)
        values = ", ".join(f":{column}" for column in DATA_COLUMNS)
        self._insert = text(
            f"INSERT OR REPLACE INTO {_SQLITE_STAGE} (transaction_id, kind, {columns}) "
            f"VALUES (:transaction_id, :kind, {values})"
        )

    @classmethod
    async def open(cls, session: AsyncSession, target: Target) -> _SqliteWriter:
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
        writer = cls(session, target)
        await writer.restart()
        return writer

    async def add(self, page: SyncPage) -> None:
        started = time.monotonic()
        upserts, removed = _latest(page)
        rows: list[dict[str, Any]] = []
        for t in upserts:
            row = dict(zip(DATA_COLUMNS, _data(t), strict=True))
            row.update(
                transaction_id=t.transaction_id,
                kind=UPSERTED,
                amount=float(t.amount),  # SQLite stores NUMERIC as REAL regardless
                date=t.date.isoformat(),
                authorized_date=t.authorized_date and t.authorized_date.isoformat(),
                datetime=_sqlite_datetime(t.datetime),
                pending=int(t.pending),
            )
            rows.append(row)
        for transaction_id in removed:
            blank: dict[str, Any] = dict.fromkeys(DATA_COLUMNS)
            blank.update(transaction_id=transaction_id, kind=REMOVED)
            rows.append(blank)
        if rows:
            await self._session.execute(self._insert, rows)
        self.seconds += time.monotonic() - started

    async def restart(self) -> None:
        await self._session.execute(text(f"DELETE FROM {_SQLITE_STAGE}"))

    async def finish(self) -> None:
        started = time.monotonic()
        await _apply_stage(self._session, _SQLITE_STAGE, self._target)
        await self.restart()  # the (empty) table stays with the pooled connection
        self.seconds += time.monotonic() - started

    async def discard(self) -> None:
        await self.restart()
