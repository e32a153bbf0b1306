"""Route asking for a sync of one connection (executed later by the worker)."""

from __future__ import annotations

from fastapi import APIRouter

from plaid_bridge.activity import audit
from plaid_bridge.api.openapi import answers
from plaid_bridge.api.params import ItemIdPath
from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.connections.service import find_connection
from plaid_bridge.dependencies import Member, SessionDep
from plaid_bridge.sync.requests import refuse_unsyncable, request_sync

router = APIRouter(tags=["sync"])

SYNC_REQUESTED = "SYNC_REQUESTED"


class SyncRequested(CamelModel):
    sync_requested: bool = True


@router.post(
    "/connections/{itemId}/sync",
    status_code=202,
    response_model=SyncRequested,
    responses=answers(403, 404, 409),
)
async def trigger_sync(item_id: ItemIdPath, caller: Member, session: SessionDep) -> SyncRequested:
    """Ask for a transactions sync; coalesces with one already queued or running."""
    connection = await find_connection(session, caller, item_id)
    audit.begin_for(caller, SYNC_REQUESTED, item_id)
    refuse_unsyncable(connection)
    await request_sync(session, item_id, reason="manual")
    await audit.record_for(session, caller, SYNC_REQUESTED, item_id=item_id)
    return SyncRequested()
