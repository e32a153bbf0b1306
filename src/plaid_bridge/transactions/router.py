"""Routes of the local transaction store: the change feed and the newest-first list."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response

from plaid_bridge.api.openapi import answers
from plaid_bridge.api.params import AccountIdQuery, FeedCursor, ItemIdPath, ItemIdQuery, ListCursor
from plaid_bridge.connections.service import find_connection
from plaid_bridge.dependencies import SessionDep, Viewer
from plaid_bridge.transactions import service
from plaid_bridge.transactions.feed import feed_page
from plaid_bridge.transactions.schemas import FeedPageOut, TransactionPageOut

router = APIRouter(tags=["transactions"])
JSON = "application/json"


@router.get(
    "/transactions/{itemId}/sync",
    response_class=Response,
    responses={200: {"model": FeedPageOut, "content": {JSON: {}}}, **answers(400, 404)},
)
async def transactions_feed(
    item_id: ItemIdPath,
    caller: Viewer,
    session: SessionDep,
    cursor: FeedCursor = "",
    count: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Changes to a connection's stored transactions since a cursor of this feed."""
    connection = await find_connection(session, caller, item_id)
    page = await feed_page(session, connection, cursor, count)
    return Response(content=page.json(), media_type=JSON)


@router.get(
    "/transactions",
    response_class=Response,
    responses={200: {"model": TransactionPageOut, "content": {JSON: {}}}, **answers(400, 404)},
)
async def list_transactions(
    caller: Viewer,
    session: SessionDep,
    item_id: ItemIdQuery = None,
    account_id: AccountIdQuery = None,
    start_date: Annotated[dt.date | None, Query(alias="startDate")] = None,
    end_date: Annotated[dt.date | None, Query(alias="endDate")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    after: ListCursor = None,
) -> Response:
    """The org's stored transactions, newest first."""
    body = await service.list_transactions(
        session,
        caller,
        item_id=item_id,
        account_id=account_id,
        start_date=start_date,
        end_date=end_date,
        limit=limit,
        after=after,
    )
    return Response(content=body, media_type=JSON)
