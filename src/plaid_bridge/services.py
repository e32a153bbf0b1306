"""The Services container: everything long-lived, built once from settings and closed in one place,
for the API (its lifespan) and the standalone worker alike."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from plaid_bridge.config import Settings
from plaid_bridge.db import Database
from plaid_bridge.ops.metrics import Metrics
from plaid_bridge.plaid.client import PlaidClient
from plaid_bridge.plaid.webhook_verify import WebhookVerifier
from plaid_bridge.ratelimit.api import UserRateLimiter
from plaid_bridge.redaction import register_secret
from plaid_bridge.security.auth import TokenVerifier
from plaid_bridge.security.crypto import TokenCipher
from plaid_bridge.webhooks.group_commit import InboxWriter

__all__ = ["Services", "build_services"]

logger = logging.getLogger("plaid_bridge.services")


@dataclass(frozen=True, slots=True)
class Services:
    """Everything long-lived that the app (or the worker) builds once at start-up."""

    settings: Settings
    database: Database
    plaid: PlaidClient
    cipher: TokenCipher
    verifier: TokenVerifier
    webhook_verifier: WebhookVerifier
    user_limits: UserRateLimiter
    webhook_inbox: InboxWriter
    metrics: Metrics = field(default_factory=Metrics)

    async def aclose(self) -> None:
        """Releases every connection held: Plaid's pool and its limiter's storage, the per-user
        limits' storage and the database's pool (after the webhooks queued for the inbox are
        committed). Call once, after the last use."""
        await self.webhook_inbox.aclose()
        await self.plaid.aclose()
        await self.user_limits.aclose()
        await self.database.dispose()


def build_services(settings: Settings) -> Services:
    """The long-lived parts, built from validated settings; configured secrets are registered
    with the redaction rule first, so nothing built afterwards can log them."""
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
    database = Database.from_url(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_recycle=settings.database_pool_recycle_seconds,
    )
    return Services(
        settings=settings,
        database=database,
        plaid=plaid,
        cipher=TokenCipher.from_settings(settings, settings.var_dir),
        verifier=verifier,
        webhook_verifier=WebhookVerifier.from_settings(plaid, settings),
        user_limits=UserRateLimiter.from_settings(settings),
        webhook_inbox=InboxWriter(database, max_pending=settings.webhook_max_pending),
        metrics=metrics,
    )
