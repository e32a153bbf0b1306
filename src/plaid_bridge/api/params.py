"""Path and query parameters as the edge accepts them.

Ids and cursors are printable and short, integers fit a BIGINT (`api.schemas`): anything else is
a 400 naming the parameter, before a query is built.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from plaid_bridge.api.schemas import MAX_BIGINT, NO_CONTROL_CHARACTERS

__all__ = ["AccountIdQuery", "AfterId", "FeedCursor", "ItemIdPath", "ItemIdQuery", "ListCursor"]

MAX_ID_LENGTH = 128

ItemIdPath = Annotated[
    str,
    Path(
        alias="itemId",
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=NO_CONTROL_CHARACTERS,
        description="The connection's Plaid `item_id`.",
    ),
]
ItemIdQuery = Annotated[
    str | None,
    Query(
        alias="itemId",
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=NO_CONTROL_CHARACTERS,
        description="Only this connection's (its Plaid `item_id`).",
    ),
]
AccountIdQuery = Annotated[
    str | None,
    Query(
        alias="accountId",
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=NO_CONTROL_CHARACTERS,
        description="Only this account's (its Plaid `account_id`).",
    ),
]
FeedCursor = Annotated[
    str,
    Query(
        max_length=1024,
        pattern=NO_CONTROL_CHARACTERS,
        description="A `nextCursor` of this feed; empty for the beginning.",
    ),
]
ListCursor = Annotated[
    str | None,
    Query(
        max_length=256,
        pattern=NO_CONTROL_CHARACTERS,
        description="A `nextAfter` of this list, to read the next page.",
    ),
]
AfterId = Annotated[
    int,
    Query(ge=0, le=MAX_BIGINT, description="Continue after this id (a `nextAfter`)."),
]
