"""Routes of connection health (SPEC section 7): one connection, and the org's tally."""

from __future__ import annotations

from fastapi import APIRouter

from plaid_bridge.connections import health, service
from plaid_bridge.connections.health_rules import Health, HealthSummary
from plaid_bridge.dependencies import Admin, ServicesDep, SessionDep, Viewer

router = APIRouter(tags=["health"])


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
    return await health.check(
        services=services, session=session, caller=caller, connection=connection, live=live
    )


@router.get("/health/summary", response_model=HealthSummary)
async def health_summary(caller: Admin, session: SessionDep) -> HealthSummary:
    """Health of the org's live connections, tallied."""
    return await health.org_summary(session, caller.org_id)
