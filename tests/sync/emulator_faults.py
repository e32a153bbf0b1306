"""Driving the emulator in sync tests: faults, activity, and waiting for its calls."""

from __future__ import annotations

from typing import Any

import anyio
import httpx

SYNC = "/transactions/sync"
WAIT_SECONDS = 15.0


async def fault(control: httpx.AsyncClient, item_id: str, **fields: Any) -> None:
    """Register a fault on the Item's /transactions/sync calls (camelCase fields)."""
    response = await control.post(
        "/emulator/faults", json={"endpoint": SYNC, "itemId": item_id, **fields}
    )
    response.raise_for_status()


async def advance(control: httpx.AsyncClient, item_id: str, **counts: int) -> dict[str, int]:
    """Change the Item's ledger; returns the counts Plaid's next update reports (a posted pending
    transaction is a removal plus an addition)."""
    response = await control.post(
        "/emulator/advance", json={"itemId": item_id, "days": 1, **counts}
    )
    response.raise_for_status()
    done = response.json()["items"][0]
    return {
        "added": done["added"] + done["posted"],
        "modified": done["modified"],
        "removed": done["removed"] + done["posted"],
    }


async def sync_calls(control: httpx.AsyncClient, item_id: str) -> int:
    """How many /transactions/sync calls the emulator has answered for the Item."""
    response = await control.get("/emulator/calls", params={"endpoint": SYNC, "item_id": item_id})
    response.raise_for_status()
    count: int = response.json()["count"]
    return count


async def wait_for_calls(control: httpx.AsyncClient, item_id: str, count: int) -> None:
    """Poll (bounded) until the emulator has answered at least `count` sync calls for the Item."""
    with anyio.fail_after(WAIT_SECONDS):
        while True:
            if await sync_calls(control, item_id) >= count:
                return
            await anyio.sleep(0.02)
