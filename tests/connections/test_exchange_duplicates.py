"""An exchange that returns an item id a stored connection already holds (an emulator restarted on
an old database, or Plaid handing out the Item again) is a clear 409, with or without
`allowDuplicate`, and never removes the Item at Plaid: that connection, perhaps another org's,
keeps working. (An Item nobody holds is still removed after a failed commit:
test_connect_errors.py::test_database_failure_after_exchange_removes_the_item.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


async def _emulator_items(control: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await control.get("/emulator/items")
    return {item["itemId"]: item for item in response.json()["items"]}


async def _removals(control: httpx.AsyncClient) -> int:
    response = await control.get("/emulator/calls", params={"endpoint": "/item/remove"})
    return int(response.json()["count"])


async def _public_token_and_its_item(api: Api, control: httpx.AsyncClient) -> tuple[str, str]:
    """A public token and the id of the Item it stands for (the one the exchange will return)."""
    before = set(await _emulator_items(control))
    public_token = await api.public_token()
    [item_id] = set(await _emulator_items(control)) - before
    return public_token, item_id


async def _hold(api: Api, item_id: str, org: str) -> PlaidConnection:
    """A stored, working connection of `org` that holds `item_id`."""
    async with api.services.database.transaction() as session:
        holder = PlaidConnection(
            org_id=org, user_id="holder", item_id=item_id, institution_id="ins_109508"
        )
        holder.access_token_encrypted = api.services.cipher.encrypt("access-held", item_id)
        session.add(holder)
    return holder


@pytest.mark.parametrize("allow_duplicate", [False, True])
@pytest.mark.parametrize("holder_org", ["o2", "o1"])
async def test_an_item_id_already_held_is_409_and_the_item_stays(
    api: Api, emulator_control: httpx.AsyncClient, allow_duplicate: bool, holder_org: str
) -> None:
    public_token, item_id = await _public_token_and_its_item(api, emulator_control)
    held = await _hold(api, item_id, holder_org)
    removals = await _removals(emulator_control)

    response = await api.client.post(
        f"{BASE}/exchange-token",
        json={
            "publicToken": public_token,
            "institutionId": "ins_109508",
            "allowDuplicate": allow_duplicate,
        },
        headers=api.auth(role="MEMBER"),
    )

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "ITEM_ALREADY_CONNECTED"
    assert error["needsReauth"] is False
    # Another org's connection is not named to the caller.
    assert error.get("itemId") == (item_id if holder_org == "o1" else None)
    assert await _removals(emulator_control) == removals
    assert (await _emulator_items(emulator_control))[item_id]["removed"] is False
    async with api.services.database.transaction() as session:
        rows = list(await session.scalars(select(PlaidConnection)))
        accounts = await session.scalar(select(func.count()).select_from(PlaidAccount))
    assert [(r.org_id, r.user_id, r.status) for r in rows] == [(holder_org, "holder", "ACTIVE")]
    assert rows[0].access_token_encrypted == held.access_token_encrypted
    assert accounts == 0
    audit = (await api.client.get(f"{BASE}/audit", headers=api.auth())).json()["entries"]
    assert ("TOKEN_EXCHANGED", "FAILURE") in [(a["action"], a["outcome"]) for a in audit]
