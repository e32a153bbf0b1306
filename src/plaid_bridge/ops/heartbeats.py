"""Worker heartbeats: written by every worker while its inbox loop runs (`worker.py`), read by
`/readyz` and the metrics.

A worker whose heartbeat is older than its lease (`WORKER_LEASE_SECONDS`) is as good as gone:
its claims on webhooks are already being taken over by the others.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from plaid_bridge.db import Database, upsert, utcnow
from plaid_bridge.ops.models import WorkerHeartbeat

__all__ = ["FORGET_AFTER", "beat", "forget", "freshest"]

FORGET_AFTER = timedelta(days=1)
"""Rows of workers that stopped without saying so (crashes, kills) are removed after this."""


async def beat(database: Database, *, worker_id: str, role: str) -> None:
    """Record that `worker_id` is alive now; also drops rows of workers long gone."""
    now = utcnow()
    async with database.transaction() as session:
        statement = upsert(session, WorkerHeartbeat).values(
            worker_id=worker_id, role=role, started_at=now, beat_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[WorkerHeartbeat.worker_id], set_={"beat_at": now}
        )
        await session.execute(statement)
        await session.execute(
            delete(WorkerHeartbeat).where(WorkerHeartbeat.beat_at < now - FORGET_AFTER)
        )


async def forget(database: Database, worker_id: str) -> None:
    """Remove the row of a worker that stops cleanly."""
    async with database.transaction() as session:
        await session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == worker_id))


async def freshest(database: Database, *, role: str) -> datetime | None:
    """When the most recent heartbeat of any worker of `role` was written (None: no worker)."""
    async with database.transaction() as session:
        latest: datetime | None = await session.scalar(
            select(func.max(WorkerHeartbeat.beat_at)).where(WorkerHeartbeat.role == role)
        )
    return latest
