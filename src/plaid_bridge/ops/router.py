"""Operations endpoints, no auth: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from plaid_bridge.errors import Unavailable
from plaid_bridge.ops import migrate
from plaid_bridge.services import Services

router = APIRouter(tags=["ops"])
logger = logging.getLogger("plaid_bridge.ops")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> dict[str, str]:
    """The database is reachable and its schema is at the latest migration."""
    services: Services = request.app.state.services
    try:
        async with services.database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        current = await migrate.current_revision(services.database.engine)
    except Exception as error:
        logger.warning("ops.readyz.database_unreachable", extra={"error": type(error).__name__})
        raise Unavailable("The database is unreachable.", retry_after=5) from None
    head = migrate.head_revision()
    if current != head:
        raise Unavailable(
            f"The database schema is at {current}, not {head}; run `plaid-bridge db upgrade`.",
            code="MIGRATIONS_PENDING",
            retry_after=30,
        )
    return {"status": "ready", "migration": current or ""}


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    services: Services = request.app.state.services
    await services.metrics.refresh_from_database(services.database)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
