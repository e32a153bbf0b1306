"""Routes of connection health (SPEC section 7): one connection, and the org's tally."""

from __future__ import annotations

from fastapi import APIRouter

from plaid_bridge.api.openapi import answers
from plaid_bridge.api.params import ItemIdPath
from plaid_bridge.connections import health, service
from plaid_bridge.connections.health_rules import Health, HealthSummary
from plaid_bridge.dependencies import Admin, ServicesDep, SessionDep, Viewer

router = APIRouter(tags=["health"])


@router.get(
    "/connections/{itemId}/health",
    response_model=Health,
    responses=answers(400, 404, 409, 429, 502, 503),
)
async def connection_health(
    item_id: ItemIdPath,
    caller: Viewer,
    services: ServicesDep,
    session: SessionDep,
    live: bool = False,
) -> Health:
    """Health of one connection; `live=true` asks Plaid first."""
    connection = await service.find_connection(session, caller, item_id)
    return await health.check(
        services=services, session=session, caller=caller, connection=connection, live=live
    )


@router.get("/health/summary", response_model=HealthSummary, responses=answers(403))
async def health_summary(caller: Admin, session: SessionDep) -> HealthSummary:
    """Health of the org's live connections, tallied."""
    return await health.org_summary(session, caller.org_id)
