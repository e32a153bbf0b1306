"""The webhook's refusal under overload, placed before everything else the app runs.

While the inbox writer already has its bound of deliveries waiting for a commit, a new webhook is
answered 503 `WEBHOOK_BACKLOG` with Retry-After (Plaid redelivers) before any middleware, routing,
body reading or signature check. Under a burst beyond what the process can store, a refusal has
to cost far less than an acceptance: refusals that cost nearly as much would themselves queue up
answers for seconds. The route checks the same bound again (`InboxWriter.store`), so this is an
early answer, never the only one.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from plaid_bridge.errors import error_response
from plaid_bridge.logs import request_id_for, request_id_var
from plaid_bridge.webhooks.group_commit import BACKLOG_RETRY_AFTER, WebhookBacklog

__all__ = ["WebhookBacklogGuard"]


class WebhookBacklogGuard:
    """Pure ASGI: 503 in the error envelope for a POST to one of `paths` while the app's
    webhook inbox is full; every other request passes untouched."""

    def __init__(self, app: ASGIApp, *, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths and scope["method"] == "POST":
            services = getattr(scope["app"].state, "services", None)
            if services is not None and services.webhook_inbox.full:
                services.metrics.webhook_received(None, None, "backlog")
                incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
                token = request_id_var.set(request_id_for(incoming))
                try:
                    error = WebhookBacklog(retry_after=BACKLOG_RETRY_AFTER)
                    await error_response(error)(scope, receive, send)
                finally:
                    request_id_var.reset(token)
                return
        await self.app(scope, receive, send)
