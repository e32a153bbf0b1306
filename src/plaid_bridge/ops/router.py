"""Operations endpoints, no auth: liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import Field
from sqlalchemy import text

from plaid_bridge.api.openapi import answers
from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.db import utcnow
from plaid_bridge.errors import Unavailable
from plaid_bridge.ops import heartbeats, migrate
from plaid_bridge.services import Services
from plaid_bridge.worker import Worker

router = APIRouter(tags=["ops"])
logger = logging.getLogger("plaid_bridge.ops")


class Alive(CamelModel):
    status: str = "ok"


class WorkerState(CamelModel):
    """The worker this deployment expects: embedded in this process, or external."""

    mode: str
    heartbeat_age_seconds: float | None = None


class Ready(CamelModel):
    status: str = "ready"
    migration: str = Field(description="The database's Alembic revision (the head).")
    worker: WorkerState | None = Field(
        default=None, description="The expected worker, when this deployment expects one."
    )


@router.get("/healthz", response_model=Alive)
async def healthz() -> Alive:
    """The process is alive."""
    return Alive()


@router.get(
    "/readyz", response_model=Ready, response_model_exclude_none=True, responses=answers(503)
)
async def readyz(request: Request) -> Ready:
    """The database is reachable, its schema is at the latest migration, and a worker is working."""
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
    return Ready(migration=current or "", worker=await _worker_state(request, services))


async def _worker_state(request: Request, services: Services) -> WorkerState | None:
    """What is known of the worker this deployment expects, or None when it expects none here;
    raises Unavailable (`WORKER_STALE`) when that worker is not working.

    `WORKER_MODE=external`: some `plaid-bridge worker` must have written its heartbeat within
    `WORKER_LEASE_SECONDS`. Embedded: this process's own worker must be finishing passes.
    """
    lease = services.settings.worker_lease_seconds
    if services.settings.worker_mode == "external":
        latest = await heartbeats.freshest(services.database, role="worker")
        if latest is None:
            raise Unavailable(
                "No worker is running; start `plaid-bridge worker` (WORKER_MODE=external).",
                code="WORKER_STALE",
                retry_after=5,
            )
        age = max((utcnow() - latest).total_seconds(), 0.0)
        if age > lease:
            raise Unavailable(
                f"No worker has reported for {age:.0f} s (WORKER_LEASE_SECONDS={lease:g}).",
                code="WORKER_STALE",
                retry_after=5,
            )
        return WorkerState(mode="external", heartbeat_age_seconds=round(age, 1))
    worker: Worker | None = getattr(request.app.state, "worker", None)
    if worker is None:
        return None
    problem = worker.stale_reason()
    if problem is not None:
        raise Unavailable(f"The embedded worker is not working: {problem}.", code="WORKER_STALE")
    return WorkerState(mode="embedded")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    services: Services = request.app.state.services
    await services.metrics.refresh_from_database(services.database)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
