"""Prometheus metrics: one registry per `Services` (never the process-global one) and the HTTP
middleware that times every request; `GET /metrics` (ops/router.py) renders them.

Other modules report through small methods (`webhook_received`, `sync_run`, ...) and never touch
prometheus_client. Label values are bounded: HTTP routes are path templates, webhook types and
codes outside Plaid's shape become "OTHER", so a hostile caller cannot grow the series.
Each process keeps its own figures: with several uvicorn workers, scrape each one.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.ops.models import WorkerHeartbeat
from plaid_bridge.sync.models import SyncRequest, SyncRequestState
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent

if TYPE_CHECKING:
    from plaid_bridge.db import Database

__all__ = ["HttpMetricsMiddleware", "Metrics", "route_template"]

logger = logging.getLogger("plaid_bridge.metrics")

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_PLAID_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
UNMATCHED_ROUTE = "<unmatched>"


def _bounded(value: str | None) -> str:
    """A webhook type or code as a label: Plaid's UPPER_SNAKE names pass, anything else is
    folded into one value."""
    if not value:
        return ""
    return value if _PLAID_NAME.match(value) else "OTHER"


class Metrics:
    """The service's metrics in a registry of its own; `render()` is the Prometheus text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_duration = Histogram(
            "plaid_bridge_http_request_duration_seconds",
            "HTTP requests served, by method, route template and status.",
            ["method", "route", "status"],
            buckets=_FAST,
            registry=r,
        )
        self.plaid_calls = Counter(
            "plaid_bridge_plaid_calls",
            "Attempts of Plaid calls, by endpoint, outcome (ok/retry/error) and error code.",
            ["endpoint", "outcome", "error_code"],
            registry=r,
        )
        self.plaid_duration = Histogram(
            "plaid_bridge_plaid_call_duration_seconds",
            "Duration of Plaid call attempts, by endpoint and outcome.",
            ["endpoint", "outcome"],
            buckets=_SLOW,
            registry=r,
        )
        self.limiter_waits = Counter(
            "plaid_bridge_plaid_limiter_waits",
            "Plaid calls that waited for a rate-limit slot, by endpoint and full window scope.",
            ["endpoint", "scope"],
            registry=r,
        )
        self.limiter_wait_seconds = Histogram(
            "plaid_bridge_plaid_limiter_wait_seconds",
            "Time Plaid calls waited for a rate-limit slot.",
            ["endpoint"],
            buckets=_FAST,
            registry=r,
        )
        self.limiter_rejections = Counter(
            "plaid_bridge_plaid_limiter_rejections",
            "Plaid calls refused by our rate limiter, by endpoint and full window scope.",
            ["endpoint", "scope"],
            registry=r,
        )
        self.api_rate_limited = Counter(
            "plaid_bridge_api_rate_limited",
            "API requests refused by the per-user limits, by limit.",
            ["limit"],
            registry=r,
        )
        self.webhooks = Counter(
            "plaid_bridge_webhooks",
            "Plaid webhooks, by type, code and outcome.",
            ["webhook_type", "webhook_code", "outcome"],
            registry=r,
        )
        self.sync_runs = Counter(
            "plaid_bridge_sync_runs",
            "Transaction sync runs, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.sync_duration = Histogram(
            "plaid_bridge_sync_run_duration_seconds",
            "Duration of transaction sync runs, by outcome.",
            ["outcome"],
            buckets=_SLOW,
            registry=r,
        )
        self.sync_transactions = Counter(
            "plaid_bridge_sync_transactions_applied",
            "Transactions added, modified or removed by sync runs.",
            registry=r,
        )
        self.connections = Gauge(
            "plaid_bridge_connections",
            "Connections by status, counted in the database at scrape time.",
            ["status"],
            registry=r,
        )
        self.inbox_rows = Gauge(
            "plaid_bridge_webhook_inbox_rows",
            "Webhook inbox rows not done (PENDING, PROCESSING, FAILED), at scrape time.",
            ["status"],
            registry=r,
        )
        self.inbox_oldest = Gauge(
            "plaid_bridge_webhook_inbox_oldest_age_seconds",
            "Age of the oldest webhook waiting to be applied (PENDING or PROCESSING); 0 if none.",
            registry=r,
        )
        self.sync_queue = Gauge(
            "plaid_bridge_sync_queue_requests",
            "Sync requests queued or running, at scrape time.",
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "plaid_bridge_worker_heartbeat_age_seconds",
            "Age of the freshest worker heartbeat, by role (worker: `plaid-bridge worker`, api: "
            "the worker embedded in an API process); a role without workers has no series.",
            ["role"],
            registry=r,
        )
        self.sync_waiting = Gauge(
            "plaid_bridge_sync_queue_oldest_due_seconds",
            "How long the longest-waiting due sync request has waited for a worker (a request "
            "waiting out a retry backoff is not due); 0 if none.",
            registry=r,
        )

    # What other modules call

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One HTTP request served; `route` must be a template, never a raw path."""
        self.http_duration.labels(method, route, str(status)).observe(seconds)

    def plaid_call(
        self, endpoint: str, outcome: str, error_code: str | None, seconds: float
    ) -> None:
        """PlaidClient's `on_call` hook: one attempt at a Plaid endpoint."""
        self.plaid_calls.labels(endpoint, outcome, error_code or "").inc()
        self.plaid_duration.labels(endpoint, outcome).observe(seconds)

    def limiter_waited(self, endpoint: str, scope: str, seconds: float) -> None:
        """The outbound limiter made a call wait `seconds` for a slot."""
        self.limiter_waits.labels(endpoint, scope).inc()
        self.limiter_wait_seconds.labels(endpoint).observe(seconds)

    def limiter_rejected(self, endpoint: str, scope: str) -> None:
        """The outbound limiter refused a call (429 RATE_LIMITED)."""
        self.limiter_rejections.labels(endpoint, scope).inc()

    def api_limited(self, limit: str) -> None:
        """A request was refused by the per-user limit named `limit`."""
        self.api_rate_limited.labels(limit).inc()

    def webhook_received(
        self, webhook_type: str | None, webhook_code: str | None, outcome: str
    ) -> None:
        """A webhook reached the endpoint; `outcome` e.g. accepted, duplicate, rejected,
        processed, failed."""
        self.webhooks.labels(_bounded(webhook_type), _bounded(webhook_code), outcome).inc()

    def sync_run(self, outcome: str, seconds: float, applied: int = 0) -> None:
        """A sync run ended (`outcome` e.g. ok, failed, restarted) after `seconds`, having
        applied `applied` added + modified + removed transactions."""
        self.sync_runs.labels(outcome).inc()
        self.sync_duration.labels(outcome).observe(seconds)
        if applied > 0:
            self.sync_transactions.inc(applied)

    # Scrape

    async def refresh_from_database(self, database: Database) -> None:
        """Sets the gauges counted in the database (connections, inbox, sync queue, worker
        heartbeats); keeps the last figures (and logs) if the database cannot answer, so a
        scrape never fails on it. The figures describe the whole deployment: every process
        reports the same ones."""
        waiting = [InboxStatus.PENDING.value, InboxStatus.PROCESSING.value]
        by_status = select(PlaidConnection.status, func.count()).group_by(PlaidConnection.status)
        inbox = (
            select(WebhookEvent.status, func.count(), func.min(WebhookEvent.received_at))
            .where(WebhookEvent.status.in_([*waiting, InboxStatus.FAILED.value]))
            .group_by(WebhookEvent.status)
        )
        now = utcnow()
        queued = select(func.count()).select_from(SyncRequest)
        freshest_beats = select(WorkerHeartbeat.role, func.max(WorkerHeartbeat.beat_at)).group_by(
            WorkerHeartbeat.role
        )
        due = select(func.min(SyncRequest.not_before)).where(
            SyncRequest.state == SyncRequestState.QUEUED.value, SyncRequest.not_before <= now
        )
        try:
            async with database.engine.connect() as connection:
                statuses = (await connection.execute(by_status)).all()
                inbox_rows = (await connection.execute(inbox)).all()
                requests = int((await connection.execute(queued)).scalar_one())
                due_since = (await connection.execute(due)).scalar_one()
                beats = (await connection.execute(freshest_beats)).all()
        except Exception as error:
            logger.warning("metrics.database_unavailable", extra={"error": type(error).__name__})
            return
        counts = {status.value: 0 for status in ConnectionStatus}
        for status, count in statuses:
            counts[str(status)] = int(count)
        for status, count in counts.items():
            self.connections.labels(status).set(count)
        rows: dict[str, tuple[int, datetime | None]] = dict.fromkeys(
            (*waiting, InboxStatus.FAILED.value), (0, None)
        )
        for status, count, oldest in inbox_rows:
            rows[str(status)] = (int(count), oldest)
        for status, (count, _) in rows.items():
            self.inbox_rows.labels(status).set(count)
        waiting_since = [since for status in waiting if (since := rows[status][1]) is not None]
        self.inbox_oldest.set(_age(now, min(waiting_since) if waiting_since else None))
        self.heartbeat_age.clear()
        for role, beat_at in beats:
            self.heartbeat_age.labels(str(role)).set(_age(now, beat_at))
        self.sync_queue.set(requests)
        self.sync_waiting.set(_age(now, due_since))

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def _age(now: datetime, since: datetime | None) -> float:
    """Seconds from `since` (aware, or naive UTC as SQLite returns it) to `now`; 0 for None."""
    if since is None:
        return 0.0
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max((now - since).total_seconds(), 0.0)


def route_template(scope: Scope) -> str:
    """The matched route's full path template (`/api/v1/plaid/accounts/{itemId}`).

    The router's prefix is recovered from the request path: the route's own template, filled
    with the request's path parameters, is the path's tail. Where that does not hold (a prefix
    with parameters of its own), the route's template alone is used; never the raw path.
    """
    route: Any = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):
        return UNMATCHED_ROUTE
    try:
        tail = str(route.url_path_for(route.name, **scope.get("path_params", {})))
    except Exception:  # NoMatchFound, or a route type without url_path_for
        return template
    path: str = scope.get("path", "")
    if tail and path.endswith(tail):
        return path[: len(path) - len(tail)] + template
    return template


class HttpMetricsMiddleware:
    """Times every HTTP request into the app's metrics, labelled by route template (never the
    raw path, which carries ids) and final status; a request that raises counts as 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            services = getattr(scope["app"].state, "services", None)
            if services is not None:
                services.metrics.observe_http(
                    scope["method"], route_template(scope), status, time.perf_counter() - started
                )
