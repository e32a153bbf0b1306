"""The admin's view of the webhook inbox: an org's rows, oldest first, keyset-paginated by id.

An inbox row belongs to the org whose connection holds its `item_id`. Rows naming an Item no
connection holds (another deployment's, a removed-and-purged one, or none at all) belong to no
org and are listed to nobody; they stay in the database for operators.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent


async def org_events(
    session: AsyncSession,
    org_id: str,
    *,
    status: InboxStatus | None = None,
    item_id: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> Sequence[WebhookEvent]:
    """Inbox rows of `org_id` with an id above `after`, at most `limit`, oldest first."""
    query = (
        select(WebhookEvent)
        .join(PlaidConnection, PlaidConnection.item_id == WebhookEvent.item_id)
        .where(PlaidConnection.org_id == org_id, WebhookEvent.id > after)
    )
    if status is not None:
        query = query.where(WebhookEvent.status == status.value)
    if item_id is not None:
        query = query.where(WebhookEvent.item_id == item_id)
    return (await session.scalars(query.order_by(WebhookEvent.id).limit(limit))).all()
