"""Reading the local transaction store: the org's transactions, newest first, keyset-paginated."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.connections.service import find_connection
from plaid_bridge.errors import BadRequest
from plaid_bridge.security.caller import Caller
from plaid_bridge.transactions import cursors
from plaid_bridge.transactions.models import PlaidTransaction
from plaid_bridge.transactions.schemas import list_json


@dataclass(frozen=True, slots=True)
class After:
    """Where a page of `GET /transactions` continues: after the row (date, id), newest first."""

    date: dt.date
    id: int

    def encode(self) -> str:
        return cursors.encode([self.date.isoformat(), self.id])

    @classmethod
    def decode(cls, text: str) -> After:
        """400 INVALID_CURSOR unless `text` came from `encode`."""
        try:
            day, row_id = cursors.decode(text)
            if not cursors.is_row_number(row_id) or not cursors.is_id_text(day, 10):
                raise TypeError("bad cursor")
            return cls(dt.date.fromisoformat(day), row_id)
        except (ValueError, TypeError):
            raise BadRequest(
                "`after` is not a cursor this list issued.", code="INVALID_CURSOR"
            ) from None


async def list_transactions(
    session: AsyncSession,
    caller: Caller,
    *,
    item_id: str | None,
    account_id: str | None,
    start_date: dt.date | None,
    end_date: dt.date | None,
    limit: int,
    after: str | None,
) -> bytes:
    """The JSON page of the org's live transactions (one connection's with `item_id`: 404 if it is
    not the org's), filtered by account and inclusive date range, newest first."""
    if start_date is not None and end_date is not None and start_date > end_date:
        raise BadRequest("startDate is after endDate.", code="INVALID_DATE_RANGE")
    t = PlaidTransaction
    statement = select(t.id, t.date, t.raw).where(t.removed.is_(False))
    if item_id is not None:
        connection = await find_connection(session, caller, item_id)
        statement = statement.where(t.connection_id == connection.id)
    else:
        statement = statement.join(PlaidConnection, PlaidConnection.id == t.connection_id).where(
            PlaidConnection.org_id == caller.org_id,
            PlaidConnection.status != ConnectionStatus.REMOVED.value,
        )
    if account_id is not None:
        statement = statement.where(t.account_id == account_id)
    if start_date is not None:
        statement = statement.where(t.date >= start_date)
    if end_date is not None:
        statement = statement.where(t.date <= end_date)
    if after:
        position = After.decode(after)
        statement = statement.where(tuple_(t.date, t.id) < tuple_(position.date, position.id))
    rows = (
        await session.execute(statement.order_by(t.date.desc(), t.id.desc()).limit(limit + 1))
    ).all()
    page = rows[:limit]
    next_after = After(page[-1][1], page[-1][0]).encode() if len(rows) > limit else None
    return list_json((raw for _, _, raw in page), next_after)
