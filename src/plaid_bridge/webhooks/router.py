"""The webhook endpoint (verify, store, answer 200 fast), and the admin's list and replay of
stored webhooks.

The endpoint does no processing: a verified delivery becomes an inbox row, committed together
with the deliveries arriving at the same time (`group_commit.py`), and the worker takes it from
there (SPEC §5b). Rejections are cheap and come first: size, then the signature, all before any
database work.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.requests import ClientDisconnect

from plaid_bridge import wakeups
from plaid_bridge.api.openapi import answers, bearer_scheme
from plaid_bridge.api.params import AfterId, ItemIdQuery
from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.config import API_PREFIX
from plaid_bridge.dependencies import Admin, ServicesDep, SessionDep, per_user_limit
from plaid_bridge.errors import BadRequest, PayloadTooLarge, Unauthorized
from plaid_bridge.logs import item_id_var
from plaid_bridge.plaid.webhook_verify import VerifiedWebhook, WebhookVerificationError
from plaid_bridge.services import Services
from plaid_bridge.webhooks import intake, listing
from plaid_bridge.webhooks.group_commit import WebhookBacklog
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent

MAX_BODY_BYTES = 64 * 1024
MAX_EVENT_ID = 2**63 - 1
logger = logging.getLogger("plaid_bridge.webhooks")

INTEGRATIONS_WEBHOOK_PATH = "/api/v1/integrations/plaid/webhook"
WEBHOOK_PATHS = frozenset({f"{API_PREFIX}/webhook", INTEGRATIONS_WEBHOOK_PATH})
"""Where Plaid posts webhooks: under the API prefix, and the old module's URL."""

router = APIRouter(tags=["webhooks"])
"""Mounted under the API prefix."""
integrations_router = APIRouter(tags=["webhooks"])
"""The old module's webhook URL, which operators may still have registered at Plaid."""


class WebhookReceived(CamelModel):
    received: bool = True


class ReplayAccepted(CamelModel):
    replayed: bool = True
    event_id: int


# The webhook's body is read raw (its hash is signed), so OpenAPI learns its shape from here.
_WEBHOOK_DOCUMENT: dict[str, Any] = {
    "parameters": [
        {
            "name": "Plaid-Verification",
            "in": "header",
            "required": False,
            "description": "Plaid's signed JWT over the body (ES256); without it: 401.",
            "schema": {"type": "string"},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "A Plaid webhook, as Plaid sent it.",
                    "properties": {
                        "webhook_type": {"type": "string"},
                        "webhook_code": {"type": "string"},
                        "item_id": {"type": "string"},
                    },
                }
            }
        },
    },
}


async def read_capped(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refused (413) as soon as it is known to exceed `limit` bytes: from a
    declared Content-Length before reading, else while counting the bytes that arrive."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
            raise BadRequest("Invalid Content-Length.")
        if int(declared) > limit:
            raise PayloadTooLarge(f"A webhook body may not exceed {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"A webhook body may not exceed {limit} bytes.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("The request body did not arrive completely.") from None
    return b"".join(chunks)


def _wake_worker(request: Request) -> None:
    """Tell an embedded worker there is work; the row is committed either way, so a failure
    here only delays processing until the worker's next poll."""
    wakeup = getattr(request.app.state, "worker_wakeup", None)
    if wakeup is None:
        return
    try:
        wakeup.set()
    except Exception:
        logger.warning("webhooks.worker_wakeup_failed", exc_info=True)


_RECEIVED = WebhookReceived().model_dump_json(by_alias=True).encode()


async def receive_webhook(request: Request) -> Response:
    """Receive a Plaid webhook: verify it, store it, acknowledge it."""
    # The hot path of a burst: the services straight from the app, no dependency to resolve.
    services: Services = request.app.state.services
    body = await read_capped(request)
    verified: VerifiedWebhook | None = None
    if services.settings.plaid_webhook_verify:
        try:
            verified = await services.webhook_verifier.verify(
                request.headers.get("plaid-verification"), body
            )
        except WebhookVerificationError as error:
            logger.warning("webhooks.rejected", extra={"reason": error.reason})
            services.metrics.webhook_received(None, None, "rejected")
            raise Unauthorized(
                "The webhook's Plaid-Verification header is missing or invalid.",
                code="WEBHOOK_VERIFICATION_FAILED",
            ) from None
    text, document = intake.parse(body)
    row = intake.inbox_row(raw=body, text=text, document=document, verified=verified)
    try:
        event = await services.webhook_inbox.store(row)
    except WebhookBacklog:
        services.metrics.webhook_received(None, None, "backlog")
        logger.warning("webhooks.backlog")
        raise
    if event is None:
        # This token is already in the inbox: a replay, or a redelivery whose answer was lost.
        # Either way it is acknowledged and changes nothing.
        services.metrics.webhook_received(None, None, "duplicate")
        logger.warning("webhooks.replay_ignored")
        return Response(_RECEIVED, media_type="application/json")
    item_id_var.set(event.item_id)
    services.metrics.webhook_received(event.webhook_type, event.webhook_code, "received")
    logger.info(
        "webhooks.received",
        extra={
            "event_id": event.id,
            "webhook_type": event.webhook_type,
            "webhook_code": event.webhook_code,
        },
    )
    _wake_worker(request)
    return Response(_RECEIVED, media_type="application/json")


_WEBHOOK_ROUTE: dict[str, Any] = {
    "methods": ["POST"],
    "status_code": 200,
    "response_model": WebhookReceived,
    "responses": answers(400, 401, 413, 503),
    "openapi_extra": _WEBHOOK_DOCUMENT,
}
router.add_api_route("/webhook", receive_webhook, **_WEBHOOK_ROUTE)
integrations_router.add_api_route(INTEGRATIONS_WEBHOOK_PATH, receive_webhook, **_WEBHOOK_ROUTE)


@router.post(
    "/webhooks/{eventId}/replay",
    status_code=202,
    dependencies=[per_user_limit, bearer_scheme],
    response_model=ReplayAccepted,
    responses=answers(400, 401, 403, 404, 409, 429, 503),
)
async def replay_webhook(
    event_id: Annotated[int, Path(alias="eventId", ge=1, le=MAX_EVENT_ID)],
    caller: Admin,
    services: ServicesDep,
    request: Request,
) -> ReplayAccepted:
    """Re-process a stored webhook of the org."""
    async with services.database.transaction() as session:
        await intake.replay(session, caller, event_id)
        await wakeups.notify_inbox(session)
    _wake_worker(request)
    return ReplayAccepted(event_id=event_id)


class InboxRow(CamelModel):
    """One stored webhook as the inbox holds it (the body stays in the database)."""

    id: int
    type: str | None
    code: str | None
    item_id: str | None
    status: InboxStatus
    attempts: int
    received_at: datetime
    last_error: str | None

    @classmethod
    def of(cls, event: WebhookEvent) -> InboxRow:
        return cls(
            id=event.id,
            type=event.webhook_type,
            code=event.webhook_code,
            item_id=event.item_id,
            status=InboxStatus(event.status),
            attempts=event.attempts,
            received_at=event.received_at,
            last_error=event.last_error,
        )


class InboxPage(CamelModel):
    webhooks: list[InboxRow]
    next_after: int | None


@router.get(
    "/webhooks",
    response_model=InboxPage,
    dependencies=[per_user_limit, bearer_scheme],
    responses=answers(400, 401, 403, 429, 503),
)
async def list_webhooks(
    caller: Admin,
    session: SessionDep,
    status: Annotated[InboxStatus | None, Query()] = None,
    item_id: ItemIdQuery = None,
    after: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> InboxPage:
    """Stored webhooks of the org's Items, oldest first, after the given id (to find one to
    replay: `?status=FAILED`)."""
    rows = await listing.org_events(
        session, caller.org_id, status=status, item_id=item_id, after=after, limit=limit
    )
    return InboxPage(
        webhooks=[InboxRow.of(row) for row in rows],
        next_after=rows[-1].id if len(rows) == limit else None,
    )
