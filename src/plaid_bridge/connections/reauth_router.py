"""Routes of re-authentication (Link update mode): an update-mode Link token for a connection, then
the confirmation that Plaid sees it repaired."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from plaid_bridge.api.openapi import answers
from plaid_bridge.api.params import ItemIdPath
from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.connections import reauth, service
from plaid_bridge.connections.router import connection_out
from plaid_bridge.connections.schemas import ConnectionOut
from plaid_bridge.dependencies import Member, ServicesDep, SessionDep

# Repairing is what the health verdict recommends: the API docs list both under one tag.
router = APIRouter(tags=["health"])


class ReauthRequest(CamelModel):
    account_selection: bool = False


class ReauthLinkResponse(CamelModel):
    link_token: str
    expiration: datetime


@router.post(
    "/connections/{itemId}/reauth",
    status_code=201,
    response_model=ReauthLinkResponse,
    responses=answers(403, 400, 404, 409, 429, 502, 503),
)
async def create_reauth_link(
    item_id: ItemIdPath,
    caller: Member,
    services: ServicesDep,
    session: SessionDep,
    body: ReauthRequest | None = None,
) -> ReauthLinkResponse:
    """Create an update-mode Link token to repair a connection."""
    connection = await service.find_connection(session, caller, item_id)
    link = await reauth.create_link_token(
        services=services,
        session=session,
        caller=caller,
        connection=connection,
        account_selection=body.account_selection if body is not None else False,
    )
    return ReauthLinkResponse(link_token=link.link_token, expiration=link.expiration)


@router.post(
    "/connections/{itemId}/reauth/complete",
    response_model=ConnectionOut,
    responses=answers(403, 400, 404, 409, 429, 502, 503),
)
async def complete_reauth(
    item_id: ItemIdPath, caller: Member, services: ServicesDep, session: SessionDep
) -> ConnectionOut:
    """Confirm a repair with Plaid and reactivate the connection."""
    connection = await service.find_connection(session, caller, item_id)
    repaired = await reauth.complete(
        services=services, session=session, caller=caller, connection=connection
    )
    return connection_out(repaired)
