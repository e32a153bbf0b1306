"""Routes of connection health (SPEC section 7) and re-authentication (Link update mode)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.connections import health_checks, reauth, service
from plaid_bridge.connections.health import Health, HealthSummary
from plaid_bridge.connections.router import connection_out
from plaid_bridge.connections.schemas import ConnectionOut
from plaid_bridge.dependencies import Admin, Member, ServicesDep, SessionDep, Viewer

router = APIRouter(tags=["health"])


class ReauthRequest(CamelModel):
    account_selection: bool = False


class ReauthLinkResponse(CamelModel):
    link_token: str
    expiration: datetime


@router.get("/connections/{item_id}/health", response_model=Health)
async def connection_health(
    item_id: str,
    caller: Viewer,
    services: ServicesDep,
    session: SessionDep,
    live: bool = False,
) -> Health:
    """Health of one connection; `live=true` asks Plaid first."""
    connection = await service.find_connection(session, caller, item_id)
    return await health_checks.check(
        services=services, session=session, caller=caller, connection=connection, live=live
    )


@router.get("/health/summary", response_model=HealthSummary)
async def health_summary(caller: Admin, session: SessionDep) -> HealthSummary:
    """Health of the org's live connections, tallied."""
    return await health_checks.org_summary(session, caller.org_id)


@router.post("/connections/{item_id}/reauth", status_code=201, response_model=ReauthLinkResponse)
async def create_reauth_link(
    item_id: str,
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


@router.post("/connections/{item_id}/reauth/complete", response_model=ConnectionOut)
async def complete_reauth(
    item_id: str, caller: Member, services: ServicesDep, session: SessionDep
) -> ConnectionOut:
    """Confirm a repair with Plaid and reactivate the connection."""
    connection = await service.find_connection(session, caller, item_id)
    repaired = await reauth.complete(
        services=services, session=session, caller=caller, connection=connection
    )
    return connection_out(repaired)
