"""The application factory and its lifespan: mounts routers and middleware, runs the services
(and an embedded worker) for the app's lifetime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from plaid_bridge.activity import audit
from plaid_bridge.activity.router import router as activity_router
from plaid_bridge.api.body_limit import BodyLimitMiddleware
from plaid_bridge.api.openapi import answers, bearer_scheme, describe_api
from plaid_bridge.browser.cors import CorsMiddleware
from plaid_bridge.browser.envelope import OperateEnvelopeMiddleware
from plaid_bridge.config import API_PREFIX, Settings, load_settings
from plaid_bridge.connections.health_router import router as health_router
from plaid_bridge.connections.reauth_router import router as reauth_router
from plaid_bridge.connections.router import router as connections_router
from plaid_bridge.demo.router import dev_router, page_router
from plaid_bridge.dependencies import per_user_limit
from plaid_bridge.errors import AppError, audit_failure, error_response, install_error_handlers
from plaid_bridge.logs import (
    client_ip_var,
    configure_logging,
    item_id_var,
    org_id_var,
    request_id_for,
    request_id_var,
)
from plaid_bridge.ops.metrics import HttpMetricsMiddleware
from plaid_bridge.ops.router import router as ops_router
from plaid_bridge.services import Services, build_services
from plaid_bridge.sync.router import router as sync_router
from plaid_bridge.transactions.router import router as transactions_router
from plaid_bridge.webhooks.backlog_guard import WebhookBacklogGuard
from plaid_bridge.webhooks.router import WEBHOOK_PATHS
from plaid_bridge.webhooks.router import integrations_router as webhooks_integrations_router
from plaid_bridge.webhooks.router import router as webhooks_router
from plaid_bridge.worker import Worker, default_worker_id, stop_within

logger = logging.getLogger("plaid_bridge.app")
_API_DESCRIPTION = """\
Bank connections through Plaid. Every route under `/api/v1/plaid` but the webhook needs a bearer
JWT (in development: `plaid-bridge dev-token --user U --org O --role OWNER`, then **Authorize**).
Every error answer is the JSON envelope `{error: {code, message, needsReauth, retryAfter,
plaid?}, requestId}`; request bodies over `MAX_REQUEST_BYTES` are refused with 413.
"""


class RequestContextMiddleware:
    """Gives every request an id (a sane incoming `X-Request-ID`, else a new one), echoes it in
    the response, and scopes the logging context (request id, client address, org, Item) and
    the pending audit action to the request. Runs inside the proxy-headers middleware, so the
    client address is the one the audit log records."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = request_id_for(incoming)
        client = scope.get("client")
        tokens = (
            request_id_var.set(request_id),
            org_id_var.set(None),
            item_id_var.set(None),
            audit.pending_action.set([]),
            client_ip_var.set(client[0] if client else None),
        )

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Unexpected errors end here, inside the request's context: logged (redacted), the
            # attempted action audited as failed, and the envelope sent if nothing was yet.
            logger.error("request.unexpected_error", exc_info=exc)
            error = AppError()
            await audit_failure(scope["app"], error)
            if started:
                raise
            await error_response(error)(scope, receive, send_with_id)
        finally:
            request_id_var.reset(tokens[0])
            org_id_var.reset(tokens[1])
            item_id_var.reset(tokens[2])
            audit.pending_action.reset(tokens[3])
            client_ip_var.reset(tokens[4])


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """The ASGI app; `services` may be given (tests), else built from `settings` at start-up."""
    settings = services.settings if services is not None else settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        running = services if services is not None else build_services(settings)
        app.state.services = running
        logger.info("app.started", extra={"plaid_env": settings.plaid_env})
        embedded = owned and settings.worker_mode == "embedded"
        worker = Worker(
            running,
            worker_id=default_worker_id("api"),
            lease_seconds=settings.worker_lease_seconds,
            role="api",
        )
        stop_worker = asyncio.Event()
        worker_task = asyncio.create_task(worker.run_forever(stop_worker)) if embedded else None
        # The SDK's models load once the app serves, so neither start-up nor a request waits.
        load_sdk = asyncio.create_task(running.plaid.load_sdk()) if owned else None
        app.state.worker_wakeup = worker.wakeup if embedded else None
        app.state.worker = worker if embedded else None  # /readyz checks it
        try:
            yield
        finally:
            if load_sdk is not None:
                load_sdk.cancel()
            stop_worker.set()
            if worker_task is not None:
                # Open requests had the first half of the grace (`plaid-bridge serve`).
                await stop_within(worker_task, stop_worker, settings.shutdown_grace_seconds / 2)
            if owned:
                await running.aclose()

    # /docs and /redoc with their assets served from the fastapi-offline package: no CDN.
    app = FastAPIOffline(
        title="plaid-bridge",
        version="0.1.0",
        summary="Bank connections through Plaid for the business platform.",
        description=_API_DESCRIPTION,
        lifespan=lifespan,
        static_url="/docs/static",
        swagger_ui_parameters={"persistAuthorization": True},
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)
    app.include_router(ops_router)
    # The webhook routes first: a burst of webhooks is the traffic that matching costs most.
    app.include_router(webhooks_router, prefix=API_PREFIX)
    app.include_router(webhooks_integrations_router)
    limited = [per_user_limit, bearer_scheme]  # per-user limits: not on the webhook routes
    # What every authenticated route may answer, besides its own errors.
    common = answers(401, 429, 503)
    for router in (
        connections_router,
        health_router,
        reauth_router,
        activity_router,
        sync_router,
        transactions_router,
    ):
        app.include_router(router, prefix=API_PREFIX, dependencies=limited, responses=common)
    if settings.plaid_env == "emulator":
        app.include_router(page_router)
        app.include_router(dev_router, prefix=API_PREFIX)
    # Innermost first. The envelope sits inside the request context (its id is meta.requestId);
    # CORS outside it, so that every answer, an unexpected 500 included, carries the grant.
    if settings.api_response_envelope == "operate":
        app.add_middleware(OperateEnvelopeMiddleware)
    describe_api(app)
    # Inside the request context too (its 413 carries the request id), before any route reads,
    # parses or authenticates.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware)
    if settings.cors_origins:
        app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(HttpMetricsMiddleware)  # outside the routes: sees the final status
    if settings.forwarded_allow_ips.strip():
        # The one place X-Forwarded-For/-Proto are believed, and only from the listed proxies;
        # the servers run with uvicorn's own proxy handling off. Without it the peer is the
        # client, so the audit IP cannot be spoofed by a header.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    # Outermost: a webhook refused for a full inbox costs next to nothing (see the guard).
    app.add_middleware(WebhookBacklogGuard, paths=WEBHOOK_PATHS)
    return app


def create_app_from_env() -> FastAPI:
    """Uvicorn's factory: settings from the environment, logging configured from them."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
