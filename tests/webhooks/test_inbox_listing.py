"""Listing the webhook inbox (ADMIN): the org's rows only, filtered and keyset-paginated."""

from __future__ import annotations

from typing import Any

import pytest

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.webhooks.models import InboxStatus, WebhookEvent
from tests.conftest import Api
from tests.webhooks.conftest import Hooks, SigningKey, webhook_body

pytestmark = pytest.mark.anyio

PATH = "/api/v1/plaid/webhooks"


async def _add(api: Api, item_id: str | None, status: InboxStatus, **values: Any) -> int:
    async with api.services.database.transaction() as session:
        event = WebhookEvent(
            webhook_type="TRANSACTIONS",
            webhook_code="SYNC_UPDATES_AVAILABLE",
            item_id=item_id,
            body="{}",
            body_sha256="0" * 64,
            status=status.value,
            attempts=values.pop("attempts", 0),
            **values,
        )
        session.add(event)
        await session.flush()
        return event.id


@pytest.fixture
async def inbox(api: Api) -> dict[str, int]:
    """item-a and item-b belong to org o1, item-c to o2; item-gone to nobody."""
    async with api.services.database.transaction() as session:
        for org, item in (("o1", "item-a"), ("o1", "item-b"), ("o2", "item-c")):
            session.add(PlaidConnection(org_id=org, user_id="u1", item_id=item))
    return {
        "a-done": await _add(api, "item-a", InboxStatus.DONE, attempts=1),
        "c-pending": await _add(api, "item-c", InboxStatus.PENDING),
        "b-failed": await _add(
            api, "item-b", InboxStatus.FAILED, attempts=8, last_error="ValueError: bad"
        ),
        "gone": await _add(api, "item-gone", InboxStatus.FAILED, attempts=8),
        "no-item": await _add(api, None, InboxStatus.DONE),
        "a-pending": await _add(api, "item-a", InboxStatus.PENDING),
        "a-failed": await _add(api, "item-a", InboxStatus.FAILED, attempts=3),
    }


async def _get(api: Api, role: str = "ADMIN", org: str = "o1", **params: Any) -> Any:
    response = await api.client.get(PATH, params=params, headers=api.auth("u1", org, role))
    assert response.status_code == 200, response.text
    return response.json()


async def test_rows_of_the_org_oldest_first_with_their_state(
    api: Api, inbox: dict[str, int]
) -> None:
    page = await _get(api)

    assert [row["id"] for row in page["webhooks"]] == [
        inbox["a-done"],
        inbox["b-failed"],
        inbox["a-pending"],
        inbox["a-failed"],
    ]
    assert page["nextAfter"] is None
    failed = page["webhooks"][1]
    received = failed.pop("receivedAt")
    assert failed == {
        "id": inbox["b-failed"],
        "type": "TRANSACTIONS",
        "code": "SYNC_UPDATES_AVAILABLE",
        "itemId": "item-b",
        "status": "FAILED",
        "attempts": 8,
        "lastError": "ValueError: bad",
    }
    assert received.startswith("20")


async def test_keyset_pages_cover_every_row_once(api: Api, inbox: dict[str, int]) -> None:
    seen: list[int] = []
    pages = 0
    after: int | None = 0
    while after is not None:
        page = await _get(api, limit=3, after=after)
        assert len(page["webhooks"]) <= 3
        seen += [row["id"] for row in page["webhooks"]]
        after = page["nextAfter"]
        pages += 1
    assert seen == sorted(
        {inbox["a-done"], inbox["b-failed"], inbox["a-pending"], inbox["a-failed"]}
    )
    assert pages == 2
    assert (await _get(api, after=inbox["a-pending"]))["webhooks"][0]["id"] == inbox["a-failed"]


async def test_filters_by_status_and_item(api: Api, inbox: dict[str, int]) -> None:
    def ids(page: Any) -> list[int]:
        return [row["id"] for row in page["webhooks"]]

    assert ids(await _get(api, status="FAILED")) == [inbox["b-failed"], inbox["a-failed"]]
    assert ids(await _get(api, itemId="item-a")) == [
        inbox["a-done"],
        inbox["a-pending"],
        inbox["a-failed"],
    ]
    assert ids(await _get(api, status="FAILED", itemId="item-a")) == [inbox["a-failed"]]
    assert ids(await _get(api, itemId="item-c")) == []  # another org's Item
    assert ids(await _get(api, itemId="item-gone")) == []  # nobody's Item


async def test_another_org_sees_only_its_own_and_nobody_sees_unknown_items(
    api: Api, inbox: dict[str, int]
) -> None:
    assert [row["id"] for row in (await _get(api, org="o2"))["webhooks"]] == [inbox["c-pending"]]
    assert (await _get(api, org="o3"))["webhooks"] == []


@pytest.mark.usefixtures("inbox")
async def test_members_may_not_list_and_bad_parameters_are_named(api: Api) -> None:
    member = await api.client.get(PATH, headers=api.auth("u1", "o1", "MEMBER"))
    assert member.status_code == 403, member.text
    assert member.json()["error"]["code"] == "FORBIDDEN"
    assert (await _get(api, role="OWNER"))["webhooks"]

    for params in ({"status": "BROKEN"}, {"limit": 0}, {"limit": 501}, {"after": -1}):
        response = await api.client.get(PATH, params=params, headers=api.auth(role="ADMIN"))
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_a_verified_delivery_is_listed_as_received(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    async with hooks.api.services.database.transaction() as session:
        session.add(PlaidConnection(org_id="o1", user_id="u1", item_id="item-live"))
    body = webhook_body("ITEM", "ERROR", item_id="item-live")
    assert (await hooks.post(body, signing_key.sign(body))).status_code == 200

    [row] = (await _get(hooks.api))["webhooks"]

    assert (row["type"], row["code"], row["itemId"], row["status"], row["attempts"]) == (
        "ITEM",
        "ERROR",
        "item-live",
        "PENDING",
        0,
    )
    assert row["lastError"] is None
