"""Putting webhooks into the inbox: a delivery as received, and an admin's replay of one.

A delivery becomes a row here and is written by the group commit (`group_commit.py`); a replay
works in the caller's transaction and only flushes; the worker does the processing. A delivery
whose verified token was already stored is a replay and adds nothing; the database's unique index
on the token decides, so this holds across replicas and concurrent requests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.activity import audit
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.errors import BadRequest, Conflict, NotFound
from plaid_bridge.plaid.webhook_verify import VerifiedWebhook
from plaid_bridge.security.caller import Caller
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent

WEBHOOK_REPLAYED = "WEBHOOK_REPLAYED"


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    """The body as text and as a JSON object; BadRequest if it is neither UTF-8 nor an object."""
    try:
        text = body.decode("utf-8")
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise BadRequest("The webhook body is not JSON.", code="INVALID_WEBHOOK_BODY") from None
    if not isinstance(document, dict):
        raise BadRequest("The webhook body is not a JSON object.", code="INVALID_WEBHOOK_BODY")
    return text, document


def _column_text(document: dict[str, Any], key: str, limit: int) -> str | None:
    """A routing field as the column can hold it; anything else stays only in the body."""
    value = document.get(key)
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        return None
    return value


@dataclass(frozen=True, slots=True)
class Stored:
    """The inbox row a delivery became."""

    id: int
    webhook_type: str | None
    webhook_code: str | None
    item_id: str | None


def inbox_row(
    *, raw: bytes, text: str, document: dict[str, Any], verified: VerifiedWebhook | None
) -> dict[str, Any]:
    """The PENDING inbox row of a delivery, holding the exact body (`text` is `raw` decoded);
    unknown types, codes and Items too (the worker decides what they mean). Every row has the
    same columns, so a batch of them is one statement (`webhooks/group_commit.py`)."""
    return {
        "webhook_type": _column_text(document, "webhook_type", 64),
        "webhook_code": _column_text(document, "webhook_code", 64),
        "item_id": _column_text(document, "item_id", 128),
        "body": text,
        "body_sha256": hashlib.sha256(raw).hexdigest(),
        "token_sha256": None if verified is None else verified.token_sha256,
        "signed_at": None if verified is None else datetime.fromtimestamp(verified.issued_at, UTC),
        "status": InboxStatus.PENDING.value,
        "attempts": 0,
        "received_at": utcnow(),
    }


async def replay(session: AsyncSession, caller: Caller, event_id: int) -> None:
    """Put an event of the caller's org back in the queue (PENDING, no attempts, no claim) and
    audit it. NotFound unless its Item is a connection of the caller's org; Conflict while a
    worker holds a live claim on it (resetting that would let two workers process it)."""
    audit.begin_for(caller, WEBHOOK_REPLAYED)
    event = await session.scalar(
        select(WebhookEvent)
        .join(PlaidConnection, PlaidConnection.item_id == WebhookEvent.item_id)
        .where(WebhookEvent.id == event_id, PlaidConnection.org_id == caller.org_id)
    )
    if event is None:
        raise NotFound("No such webhook event.")
    now = utcnow()
    table = WebhookEvent.__table__.c
    reset = await session.scalar(
        update(WebhookEvent)
        .where(
            table.id == event_id,
            or_(
                table.status != InboxStatus.PROCESSING.value,
                table.claimed_until.is_(None),
                table.claimed_until <= now,
            ),
        )
        .values(status=InboxStatus.PENDING.value, attempts=0, claimed_by=None, claimed_until=None)
        .returning(table.id)
        .execution_options(synchronize_session=False)
    )
    if reset is None:
        raise Conflict(
            "This webhook is being processed right now; try again shortly.",
            code="WEBHOOK_IN_PROGRESS",
        )
    await audit.record_for(
        session,
        caller,
        WEBHOOK_REPLAYED,
        item_id=event.item_id,
        details={
            "eventId": event_id,
            "webhookType": event.webhook_type,
            "webhookCode": event.webhook_code,
            "previousStatus": event.status,
        },
    )
