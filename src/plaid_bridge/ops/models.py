"""Worker heartbeats: each worker's last sign of life, so that readiness and metrics can tell
whether webhooks and syncs are being worked on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from plaid_bridge.db import Base, utcnow


class WorkerHeartbeat(Base):
    """One row per running worker (host:pid:role), refreshed while its inbox loop runs and
    removed when it stops cleanly; a crashed worker's row simply grows old."""

    __tablename__ = "plaid_worker_heartbeats"
    __table_args__ = (Index(None, "role", "beat_at"),)

    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # "worker" for `plaid-bridge worker`, "api" for the worker embedded in an API process.
    role: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)
