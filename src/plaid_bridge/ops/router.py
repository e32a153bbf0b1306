"""Operations endpoints, no auth: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import Field
from sqlalchemy import text

from plaid_bridge.api.openapi import answers
from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.errors import Unavailable
from plaid_bridge.ops import migrate
from plaid_bridge.services import Services

router = APIRouter(tags=["ops"])
logger = logging.getLogger("plaid_bridge.ops")


class Alive(CamelModel):
    status: str = "ok"


class Ready(CamelModel):
    status: str = "ready"
    migration: str = Field(description="The database's Alembic revision (the head).")


@router.get("/healthz", response_model=Alive)
async def healthz() -> Alive:
    """The process is alive."""
    return Alive()


@router.get("/readyz", response_model=Ready, responses=answers(503))
async def readyz(request: Request) -> Ready:
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
    return Ready(migration=current or "")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    services: Services = request.app.state.services
    await services.metrics.refresh_connections(services.database)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
