"""The service's own change feed of one connection's transactions (`GET /transactions/{id}/sync`).

Every applied sync stamps the rows it changed with the connection's next sequence number
(`change_seq`; `created_seq` on first insert). A client at rest holds the store as of a sequence
number S (its cursor). A pass from S serves, page by page, the changes up to the connection's
sequence H when the pass began, and every decision is taken against S, the cursor the client
started from, never a page's:

- a row created after S (the client has not seen it) comes once under `transactions`, in its
  latest version, in the order of its creation; one created and removed again before H is
  skipped;
- a row created at or before S (the client holds it) that changed in (S, H] comes under
  `modified`, or under `removed` if it is gone.

The walk's order never moves under the client: a new row stays at its creation, and a held row
that changes again during the pass moves beyond H, into the next pass (still held, so still
`modified` or `removed` there). A row created during the pass (after H) waits for the next pass,
where it is new. A row new to this pass but removed after H is still served here, so that the next
pass's removal is of an id the client holds. The last page's cursor is H: the client now holds
the store as of H.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

from sqlalchemy import and_, not_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.errors import BadRequest
from plaid_bridge.transactions import cursors
from plaid_bridge.transactions.models import PlaidTransaction
from plaid_bridge.transactions.schemas import feed_json

_VERSION = 2
_LEGACY_VERSION = 1


@dataclass(frozen=True, slots=True)
class Pass:
    """Where a client is: it holds the store as of `origin`; within a pass up to `high` (None:
    the pass begins with this request), after the row `position` = (walk key, transaction id)."""

    origin: int
    high: int | None
    position: tuple[int, str]


def encode_cursor(item_id: str, state: Pass) -> str:
    """An opaque cursor for `state` in the Item's feed."""
    if state.high is None:
        return cursors.encode([_VERSION, item_id, state.origin])
    return cursors.encode([_VERSION, item_id, state.origin, state.high, *state.position])


def _at_rest(origin: int) -> Pass:
    return Pass(origin, None, (origin, ""))


def decode_cursor(item_id: str, cursor: str) -> Pass:
    """The state a cursor names; "" is the beginning. 400 INVALID_CURSOR for anything else,
    including another Item's cursor. A cursor of the first version (the last row served) is read
    as a client holding the store as of that row's sequence."""
    if not cursor:
        return _at_rest(0)
    try:
        values = cursors.decode(cursor)
    except ValueError:
        values = []
    state: Pass | None = None
    if len(values) >= 3 and values[1] == item_id:
        version, rest = values[0], values[2:]
        if version == _VERSION and len(rest) == 1 and cursors.is_row_number(rest[0]):
            state = _at_rest(rest[0])
        elif version == _VERSION and len(rest) == 4:
            origin, high, key, transaction_id = rest
            if all(map(cursors.is_row_number, (origin, high, key))) and cursors.is_id_text(
                transaction_id
            ):
                state = Pass(origin, high, (key, transaction_id))
        elif version == _LEGACY_VERSION and len(rest) == 2:
            seq, transaction_id = rest
            if cursors.is_row_number(seq) and cursors.is_id_text(transaction_id):
                state = Pass(seq, None, (seq, transaction_id))
    if state is None:
        raise BadRequest("The cursor is not one this feed issued.", code="INVALID_CURSOR")
    return state


@dataclass(frozen=True, slots=True)
class FeedPage:
    added: list[str]
    modified: list[str]
    removed: list[dict[str, str]]
    next_cursor: str
    has_more: bool

    def json(self) -> bytes:
        return feed_json(
            added=self.added,
            modified=self.modified,
            removed=self.removed,
            next_cursor=self.next_cursor,
            has_more=self.has_more,
        )


_t = PlaidTransaction
_COLUMNS = (
    _t.created_seq,
    _t.change_seq,
    _t.transaction_id,
    _t.account_id,
    _t.raw,  # the stored text, spliced into the page unparsed
    _t.removed,
)


async def feed_page(
    session: AsyncSession, connection: PlaidConnection, cursor: str, count: int
) -> FeedPage:
    """Up to `count` changes of the connection's transactions after `cursor`."""
    state = decode_cursor(connection.item_id, cursor)
    origin = state.origin
    high = connection.change_seq if state.high is None else state.high
    if high <= origin:  # nothing happened since the client's cursor
        return FeedPage([], [], [], encode_cursor(connection.item_id, _at_rest(origin)), False)
    after = tuple_(*state.position)
    # Two walks, each in the order of an index, merged: rows new to the client by creation...
    new_rows = (
        await session.execute(
            select(*_COLUMNS)
            .where(
                _t.connection_id == connection.id,
                _t.created_seq > origin,
                _t.created_seq <= high,
                tuple_(_t.created_seq, _t.transaction_id) > after,
                not_(and_(_t.removed, _t.change_seq <= high)),
            )
            .order_by(_t.created_seq, _t.transaction_id)
            .limit(count + 1)
        )
    ).all()
    # ...and rows the client holds, by their change.
    held_rows = (
        await session.execute(
            select(*_COLUMNS)
            .where(
                _t.connection_id == connection.id,
                _t.created_seq <= origin,
                # True of every row changed since its creation; the change index holds only those.
                _t.change_seq > _t.created_seq,
                _t.change_seq > origin,
                _t.change_seq <= high,
                tuple_(_t.change_seq, _t.transaction_id) > after,
            )
            .order_by(_t.change_seq, _t.transaction_id)
            .limit(count + 1)
        )
    ).all()
    walk = sorted(
        [((row.created_seq, row.transaction_id), True, row) for row in new_rows]
        + [((row.change_seq, row.transaction_id), False, row) for row in held_rows],
        key=itemgetter(0),
    )
    has_more = len(walk) > count
    walk = walk[:count]
    added: list[str] = []
    modified: list[str] = []
    removed: list[dict[str, str]] = []
    for _key, new, row in walk:
        if new:
            added.append(row.raw)
        elif row.removed:
            removed.append({"transaction_id": row.transaction_id, "account_id": row.account_id})
        else:
            modified.append(row.raw)
    following = Pass(origin, high, walk[-1][0]) if has_more else _at_rest(high)
    return FeedPage(
        added=added,
        modified=modified,
        removed=removed,
        next_cursor=encode_cursor(connection.item_id, following),
        has_more=has_more,
    )
