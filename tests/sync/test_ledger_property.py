"""Property: whatever Plaid does between and during syncs, once a sync completes the store equals
the emulator's ledger exactly (random activity; mutations during pagination, Plaid 500s and
timeouts on random pages; a worker dying between pages)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plaid_bridge.services import Services
from plaid_bridge.sync.engine import Outcome, sync_item
from tests.conftest import Api
from tests.sync.emulator_faults import advance, fault, sync_calls
from tests.sync.store import ledger, stored

pytestmark = pytest.mark.anyio
TIMEOUT_SECONDS = 0.5
_users = itertools.count()


@dataclass(frozen=True)
class Step:
    add: int
    modify: int
    post: int
    remove: int
    disturbance: str  # none, mutation, server_error, timeout, crash
    page: int


steps = st.builds(
    Step,
    add=st.integers(0, 16),
    modify=st.integers(0, 4),
    post=st.integers(0, 3),
    remove=st.integers(0, 3),
    disturbance=st.sampled_from(["none", "mutation", "server_error", "timeout", "crash"]),
    page=st.integers(1, 3),
)


async def disturb(control: httpx.AsyncClient, item_id: str, step: Step) -> None:
    if step.disturbance == "mutation":
        await fault(
            control,
            item_id,
            errorCode="TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
            page=step.page,
        )
    elif step.disturbance == "server_error":  # more than the client's own retries
        await fault(control, item_id, errorCode="INTERNAL_SERVER_ERROR", page=step.page, count=5)
    elif step.disturbance == "timeout":
        await fault(control, item_id, latencyMs=int(TIMEOUT_SECONDS * 1600), page=step.page)


async def crash_between_pages(
    services: Services, control: httpx.AsyncClient, item_id: str, page: int
) -> None:
    """Start a sync and kill it once `page - 1` pages are in (or let it finish if shorter)."""
    calls = await sync_calls(control, item_id)
    await fault(control, item_id, latencyMs=2_000, page=page)
    finished = anyio.Event()

    async def run() -> None:
        await sync_item(services, item_id, trigger="doomed")
        finished.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        with anyio.fail_after(15):
            while True:
                if finished.is_set() or await sync_calls(control, item_id) >= calls + page - 1:
                    break
                await anyio.sleep(0.02)
        group.cancel_scope.cancel()


async def sync_until_done(services: Services, control: httpx.AsyncClient, item_id: str) -> None:
    for attempt in range(6):
        result = await sync_item(services, item_id, trigger="property")
        await control.delete("/emulator/faults")
        if result.outcome is Outcome.SUCCESS:
            return
        assert result.retryable, result
        assert attempt < 5, result


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(steps, min_size=1, max_size=4))
async def test_store_equals_ledger_after_every_completed_sync(
    api: Api, emulator_control: httpx.AsyncClient, script: list[Step]
) -> None:
    services = api.services
    if services.settings.plaid_timeout_seconds != TIMEOUT_SECONDS:
        services = api.use(
            services.settings.model_copy(update={"plaid_timeout_seconds": TIMEOUT_SECONDS})
        )
    item_id: str = (await api.connect(user=f"property-{next(_users)}"))["itemId"]
    await sync_until_done(services, emulator_control, item_id)
    assert await stored(services.database, item_id) == await ledger(emulator_control, item_id)

    for step in script:
        await advance(
            emulator_control,
            item_id,
            add=step.add,
            modify=step.modify,
            post=step.post,
            remove=step.remove,
        )
        if step.disturbance == "crash":
            await crash_between_pages(services, emulator_control, item_id, step.page)
            await emulator_control.delete("/emulator/faults")
        else:
            await disturb(emulator_control, item_id, step)
        await sync_until_done(services, emulator_control, item_id)
        assert await stored(services.database, item_id) == await ledger(emulator_control, item_id)
