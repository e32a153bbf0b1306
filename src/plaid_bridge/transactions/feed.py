"""The service's own change feed of one connection's transactions (`GET /transactions/{id}/sync`).

Every applied sync stamps the rows it changed with the connection's next sequence number. The
feed walks rows in (change_seq, transaction_id) order; a cursor is the position of the last row
served. From a position, a live row is "added" if its creation, (created_seq, transaction_id),
lies after the position (the client has not seen it) and "modified" otherwise; a removed row is
reported only if the client had seen it. So paging from the empty cursor yields every live
transaction once as added, and the last cursor later yields exactly what changed since.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, not_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.errors import BadRequest
from plaid_bridge.transactions import cursors
from plaid_bridge.transactions.models import PlaidTransaction
from plaid_bridge.transactions.schemas import feed_json, transaction_json

_VERSION = 1


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the feed: after the row (seq, transaction_id); (0, "") is the beginning."""

    seq: int
    transaction_id: str


START = Position(0, "")


def encode_cursor(item_id: str, position: Position) -> str:
    """An opaque cursor for `position` in the Item's feed."""
    return cursors.encode([_VERSION, item_id, position.seq, position.transaction_id])


def decode_cursor(item_id: str, cursor: str) -> Position:
    """The position a cursor names; "" is the beginning. 400 INVALID_CURSOR for anything else,
    including another Item's cursor."""
    if not cursor:
        return START
    try:
        version, owner, seq, transaction_id = cursors.decode(cursor)
        valid = (
            version == _VERSION
            and owner == item_id
            and cursors.is_row_number(seq)
            and cursors.is_id_text(transaction_id)
        )
    except ValueError:  # InvalidCursor, or an array of another length
        valid = False
    if not valid:
        raise BadRequest("The cursor is not one this feed issued.", code="INVALID_CURSOR")
    return Position(seq, transaction_id)


@dataclass(frozen=True, slots=True)
class FeedPage:
    added: list[str]
    modified: list[str]
    removed: list[dict[str, str]]
    next_cursor: str
    has_more: bool

    def json(self) -> str:
        return feed_json(
            added=self.added,
            modified=self.modified,
            removed=self.removed,
            next_cursor=self.next_cursor,
            has_more=self.has_more,
        )


async def feed_page(
    session: AsyncSession, connection: PlaidConnection, cursor: str, count: int
) -> FeedPage:
    """Up to `count` changes of the connection's transactions after `cursor`."""
    position = decode_cursor(connection.item_id, cursor)
    t = PlaidTransaction
    after = (position.seq, position.transaction_id)
    rows = (
        await session.execute(
            select(
                t.change_seq,
                t.transaction_id,
                t.account_id,
                t.amount,
                t.raw,
                t.removed,
                t.created_seq,
            )
            .where(
                t.connection_id == connection.id,
                tuple_(t.change_seq, t.transaction_id) > tuple_(*after),
                # A row created and removed since the position was never seen: skip it.
                not_(and_(t.removed, tuple_(t.created_seq, t.transaction_id) > tuple_(*after))),
            )
            .order_by(t.change_seq, t.transaction_id)
            .limit(count + 1)
        )
    ).all()
    has_more = len(rows) > count
    rows = rows[:count]
    added: list[str] = []
    modified: list[str] = []
    removed: list[dict[str, str]] = []
    for _, transaction_id, account_id, amount, raw, is_removed, created_seq in rows:
        if is_removed:
            removed.append({"transaction_id": transaction_id, "account_id": account_id})
        elif Position(created_seq, transaction_id) > position:
            added.append(transaction_json(raw, amount))
        else:
            modified.append(transaction_json(raw, amount))
    last = Position(rows[-1][0], rows[-1][1]) if rows else position
    return FeedPage(
        added=added,
        modified=modified,
        removed=removed,
        next_cursor=encode_cursor(connection.item_id, last),
        has_more=has_more,
    )
