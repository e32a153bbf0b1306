"""Property: a client of the change feed that applies Plaid's rules strictly (`transactions` are
new to it, `modified` and `removed` name only what it holds) ends equal to the store, from any
cursor it kept, across random updates applied by the real sync engine, between passes and in the
middle of them."""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plaid_bridge.sync.engine import Outcome, sync_item
from tests.conftest import Api
from tests.sync.emulator_faults import advance
from tests.sync.store import Transactions, stored

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
_users = itertools.count()


@dataclass(frozen=True)
class Update:
    add: int
    modify: int
    post: int
    remove: int


@dataclass(frozen=True)
class Page:
    count: int


@dataclass(frozen=True)
class Restore:
    """Start again from a cursor kept earlier, with what the client held then."""

    which: int


steps = st.one_of(
    st.builds(
        Update,
        add=st.integers(0, 8),
        modify=st.integers(0, 6),
        post=st.integers(0, 3),
        remove=st.integers(0, 4),
    ),
    st.builds(Page, count=st.integers(1, 25)),
    st.builds(Restore, which=st.integers(0, 1000)),
)


@dataclass
class Client:
    """What a client of the feed holds, and its cursor."""

    cursor: str = ""
    held: Transactions = field(default_factory=dict)

    def apply(self, page: dict[str, Any]) -> None:
        for txn in page["transactions"]:
            assert txn["transaction_id"] not in self.held, "added again: the client holds it"
            self.held[txn["transaction_id"]] = txn
        for txn in page["modified"]:
            assert txn["transaction_id"] in self.held, "modified: the client never had it"
            self.held[txn["transaction_id"]] = txn
        for gone in page["removed"]:
            held = self.held.pop(gone["transaction_id"], None)
            assert held is not None, "removed: the client never had it"
            assert held["account_id"] == gone["account_id"]
        self.cursor = page["nextCursor"]


async def fetch(api: Api, item_id: str, client: Client, count: int) -> dict[str, Any]:
    response = await api.client.get(
        f"{BASE}/transactions/{item_id}/sync",
        params={"cursor": client.cursor, "count": count},
        headers=api.auth(role="VIEWER"),
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return page


async def sync(api: Api, item_id: str) -> None:
    for _ in range(3):
        if (await sync_item(api.services, item_id, trigger="property")).outcome is Outcome.SUCCESS:
            return
    raise AssertionError("the sync did not complete")


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(steps, min_size=1, max_size=14))
async def test_a_client_applying_plaids_rules_ends_equal_to_the_store(
    api: Api, emulator_control: httpx.AsyncClient, script: list[Update | Page | Restore]
) -> None:
    item_id: str = (await api.connect(user=f"feed-{next(_users)}"))["itemId"]
    await sync(api, item_id)
    client = Client()
    kept = [copy.deepcopy(client)]
    for step in script:
        if isinstance(step, Update):
            await advance(
                emulator_control,
                item_id,
                add=step.add,
                modify=step.modify,
                post=step.post,
                remove=step.remove,
            )
            await sync(api, item_id)
        elif isinstance(step, Page):
            client.apply(await fetch(api, item_id, client, step.count))
            kept.append(copy.deepcopy(client))
        else:
            client = copy.deepcopy(kept[step.which % len(kept)])

    # The pass in progress ends where it began; the next one brings the client up to date.
    for _ in range(2):
        page = {"hasMore": True}
        while page["hasMore"]:
            page = await fetch(api, item_id, client, 50)
            client.apply(page)
    assert client.held == await stored(api.services.database, item_id)
    # Up to date: the cursor yields nothing more, and stays.
    quiet = await fetch(api, item_id, client, 50)
    assert (quiet["transactions"], quiet["modified"], quiet["removed"]) == ([], [], [])
    assert (quiet["hasMore"], quiet["nextCursor"]) == (False, client.cursor)
