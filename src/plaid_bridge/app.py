"""The application factory and its lifespan: builds the database, Plaid client and security once."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaid_bridge import audit
from plaid_bridge.api_rate_limits import UserRateLimiter, per_user_limit
from plaid_bridge.config import Settings, load_settings
from plaid_bridge.connections.health_router import router as health_router
from plaid_bridge.connections.router import router as connections_router
from plaid_bridge.db import Database
from plaid_bridge.dependencies import Services
from plaid_bridge.errors import AppError, audit_failure, error_response, install_error_handlers
from plaid_bridge.feeds import router as feeds_router
from plaid_bridge.logs import configure_logging, item_id_var, org_id_var, request_id_var
from plaid_bridge.metrics import HttpMetricsMiddleware, Metrics
from plaid_bridge.metrics import router as metrics_router
from plaid_bridge.ops import router as ops_router
from plaid_bridge.plaid.client import PlaidClient
from plaid_bridge.plaid.webhook_verify import WebhookVerifier
from plaid_bridge.redaction import register_secret
from plaid_bridge.security.auth import TokenVerifier
from plaid_bridge.security.crypto import TokenCipher
from plaid_bridge.sync.router import router as sync_router
from plaid_bridge.transactions.router import router as transactions_router
from plaid_bridge.webhooks.router import integrations_router as webhooks_integrations_router
from plaid_bridge.webhooks.router import router as webhooks_router
from plaid_bridge.worker import Worker, default_worker_id

API_PREFIX = "/api/v1/plaid"
logger = logging.getLogger("plaid_bridge.app")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Gives every request an id (a sane incoming `X-Request-ID`, else a new one), echoes it in
    the response, and scopes the logging context and the pending audit action to the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        tokens = (
            request_id_var.set(request_id),
            org_id_var.set(None),
            item_id_var.set(None),
            audit.pending_action.set([]),
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


def build_services(settings: Settings) -> Services:
    """The long-lived parts, built from validated settings."""
    _, secret = settings.plaid_credentials
    register_secret(secret.get_secret_value())
    for configured in (
        settings.plaid_encryption_keys,
        settings.plaid_encryption_key,
        settings.plaid_legacy_encryption_key,
        settings.auth_jwt_secret,
    ):
        if configured is not None:
            register_secret(configured.get_secret_value())
    verifier = TokenVerifier.from_settings(settings)
    if verifier.uses_dev_secret:
        logger.warning("auth.dev_secret_in_use")
    if not settings.plaid_webhook_verify:
        logger.warning("webhooks.verification_disabled")
    metrics = Metrics()
    plaid = PlaidClient.from_settings(settings, on_call=metrics.plaid_call, limiter_events=metrics)
    return Services(
        settings=settings,
        database=Database.from_url(settings.database_url),
        plaid=plaid,
        cipher=TokenCipher.from_settings(settings, settings.var_dir),
        verifier=verifier,
        webhook_verifier=WebhookVerifier.from_settings(plaid, settings),
        metrics=metrics,
    )


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
        )
        stop_worker = asyncio.Event()
        worker_task = asyncio.create_task(worker.run_forever(stop_worker)) if embedded else None
        app.state.worker_wakeup = worker.wakeup if embedded else None
        try:
            yield
        finally:
            stop_worker.set()
            if worker_task is not None:
                await worker_task  # finishes the row in progress, releases the rest
            await app.state.user_limits.aclose()
            if owned:
                await running.plaid.aclose()
                await running.database.dispose()

    app = FastAPI(
        title="plaid-bridge",
        version="0.1.0",
        summary="Bank connections through Plaid for the business platform.",
        lifespan=lifespan,
    )
    if services is not None:
        app.state.services = services
    app.state.user_limits = UserRateLimiter.from_settings(settings)
    install_error_handlers(app)
    app.include_router(ops_router)
    app.include_router(metrics_router)
    limited = [per_user_limit]  # per-user limits: not on the webhook routes
    app.include_router(connections_router, prefix=API_PREFIX, dependencies=limited)
    app.include_router(health_router, prefix=API_PREFIX, dependencies=limited)
    app.include_router(feeds_router, prefix=API_PREFIX, dependencies=limited)
    app.include_router(sync_router, prefix=API_PREFIX, dependencies=limited)
    app.include_router(transactions_router, prefix=API_PREFIX, dependencies=limited)
    app.include_router(webhooks_router, prefix=API_PREFIX)
    app.include_router(webhooks_integrations_router)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(HttpMetricsMiddleware)  # outermost: sees the final status
    return app


def create_app_from_env() -> FastAPI:
    """Uvicorn's factory: settings from the environment, logging configured from them."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
