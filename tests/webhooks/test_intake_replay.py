"""Replaying a stored webhook: admins of the org that owns its Item only; audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from plaid_bridge.activity.audit import AuditLog
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent
from tests.webhooks.conftest import Hooks, SigningKey, webhook_body

pytestmark = pytest.mark.anyio


def _replay_path(event_id: int) -> str:
    return f"/api/v1/plaid/webhooks/{event_id}/replay"


async def _delivered(hooks: Hooks, key: SigningKey, item_id: str) -> int:
    """The id of the inbox row a verified delivery for `item_id` created."""
    body = webhook_body(item_id=item_id)
    assert (await hooks.post(body, key.sign(body))).status_code == 200
    return max(event.id for event in await hooks.stored() if event.item_id == item_id)


@pytest.fixture
async def items(hooks: Hooks) -> None:
    """item-own belongs to org o1, item-other to org o2."""
    async with hooks.api.services.database.transaction() as session:
        session.add(PlaidConnection(org_id="o1", user_id="u1", item_id="item-own"))
        session.add(PlaidConnection(org_id="o2", user_id="u2", item_id="item-other"))


async def _event(hooks: Hooks, event_id: int) -> WebhookEvent:
    async with hooks.api.services.database.transaction() as session:
        event = await session.get(WebhookEvent, event_id)
    assert event is not None
    return event


async def _set(hooks: Hooks, event_id: int, **values: object) -> None:
    async with hooks.api.services.database.transaction() as session:
        await session.execute(
            update(WebhookEvent).where(WebhookEvent.id == event_id).values(**values)
        )


@pytest.mark.usefixtures("items")
async def test_an_admin_replays_an_event_of_the_org(hooks: Hooks, signing_key: SigningKey) -> None:
    event_id = await _delivered(hooks, signing_key, "item-own")
    await _set(
        hooks,
        event_id,
        status=InboxStatus.FAILED.value,
        attempts=5,
        claimed_by="worker-1",
        claimed_until=utcnow() - timedelta(minutes=1),
    )

    response = await hooks.api.client.post(
        _replay_path(event_id), headers=hooks.api.auth("u9", "o1", "ADMIN")
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"replayed": True, "eventId": event_id}
    event = await _event(hooks, event_id)
    assert (event.status, event.attempts, event.claimed_by, event.claimed_until) == (
        InboxStatus.PENDING,
        0,
        None,
        None,
    )
    async with hooks.api.services.database.transaction() as session:
        [entry] = await session.scalars(
            select(AuditLog).where(AuditLog.action == "WEBHOOK_REPLAYED")
        )
    assert (entry.org_id, entry.user_id, entry.item_id, entry.outcome) == (
        "o1",
        "u9",
        "item-own",
        "SUCCESS",
    )
    assert entry.details["eventId"] == event_id


@pytest.mark.usefixtures("items")
async def test_events_of_another_org_or_of_no_known_item_are_404(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    others = await _delivered(hooks, signing_key, "item-other")
    unknown_item = await _delivered(hooks, signing_key, "item-nobody-knows")
    admin = hooks.api.auth("u1", "o1", "ADMIN")

    for event_id in (others, unknown_item, unknown_item + 1000):
        response = await hooks.api.client.post(_replay_path(event_id), headers=admin)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "NOT_FOUND"
    assert (await _event(hooks, others)).status == InboxStatus.PENDING
    async with hooks.api.services.database.transaction() as session:
        outcomes = list(
            await session.scalars(
                select(AuditLog.outcome).where(AuditLog.action == "WEBHOOK_REPLAYED")
            )
        )
    assert outcomes == ["FAILURE"] * 3


@pytest.mark.usefixtures("items")
async def test_members_may_not_replay(hooks: Hooks, signing_key: SigningKey) -> None:
    event_id = await _delivered(hooks, signing_key, "item-own")

    response = await hooks.api.client.post(
        _replay_path(event_id), headers=hooks.api.auth("u1", "o1", "MEMBER")
    )

    assert response.status_code == 403, response.text
    unauthenticated = await hooks.api.client.post(_replay_path(event_id))
    assert unauthenticated.status_code == 401


@pytest.mark.usefixtures("items")
async def test_an_event_a_worker_is_processing_is_not_reset(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    event_id = await _delivered(hooks, signing_key, "item-own")
    await _set(
        hooks,
        event_id,
        status=InboxStatus.PROCESSING.value,
        attempts=1,
        claimed_by="worker-1",
        claimed_until=utcnow() + timedelta(minutes=5),
    )

    response = await hooks.api.client.post(
        _replay_path(event_id), headers=hooks.api.auth("u1", "o1", "ADMIN")
    )

    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "WEBHOOK_IN_PROGRESS"
    event = await _event(hooks, event_id)
    assert (event.status, event.claimed_by) == (InboxStatus.PROCESSING, "worker-1")


@pytest.mark.parametrize("event_id", ["0", "abc", str(2**63)])
async def test_invalid_event_ids_are_400(hooks: Hooks, event_id: str) -> None:
    response = await hooks.api.client.post(
        f"/api/v1/plaid/webhooks/{event_id}/replay", headers=hooks.api.auth(role="ADMIN")
    )

    assert response.status_code == 400, response.text
