"""Status webhooks arriving late: one signed before the connection's last status change
describes an older state and is ignored, so a late ITEM/ERROR cannot undo a repair. Real signed
deliveries through the endpoint, applied by the worker."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from plaid_bridge.connections import lifecycle
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.worker import Worker
from tests.webhooks.conftest import Hooks, SigningKey, webhook_body

pytestmark = pytest.mark.anyio
ITEM = "item-stale"


@pytest.fixture
async def connection(hooks: Hooks) -> None:
    async with hooks.api.services.database.transaction() as session:
        session.add(
            PlaidConnection(
                org_id="o1",
                user_id="u1",
                item_id=ITEM,
                status="ACTIVE",
                status_changed_at=utcnow() - timedelta(hours=1),
            )
        )


def _error(code: str = "ITEM_LOGIN_REQUIRED") -> bytes:
    return webhook_body(
        "ITEM",
        "ERROR",
        ITEM,
        error={"error_type": "ITEM_ERROR", "error_code": code, "display_message": None},
    )


async def _deliver(hooks: Hooks, key: SigningKey, body: bytes, *, age: int) -> None:
    """Post `body` signed `age` seconds ago, as Plaid's late delivery would arrive."""
    response = await hooks.post(body, key.sign(body, iat=int(time.time()) - age))
    assert response.status_code == 200, response.text


async def _state(hooks: Hooks) -> tuple[str, str | None]:
    async with hooks.api.services.database.transaction() as session:
        found = await session.scalar(select(PlaidConnection).where(PlaidConnection.item_id == ITEM))
    assert found is not None
    return found.status, found.error_code


@pytest.fixture
def worker(hooks: Hooks) -> Worker:
    return Worker(hooks.api.services, worker_id="test-worker")


@pytest.mark.usefixtures("connection")
async def test_a_late_error_does_not_undo_a_newer_repair(
    hooks: Hooks, signing_key: SigningKey, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    await _deliver(hooks, signing_key, _error(), age=100)
    await worker.process_inbox()
    assert await _state(hooks) == ("LOGIN_REQUIRED", "ITEM_LOGIN_REQUIRED")
    await _deliver(hooks, signing_key, webhook_body("ITEM", "LOGIN_REPAIRED", ITEM), age=50)
    await worker.process_inbox()
    assert await _state(hooks) == ("ACTIVE", None)

    # Plaid's redelivery of an error signed before the repair: a different token, so stored.
    with caplog.at_level(logging.INFO, logger="plaid_bridge.webhooks"):
        await _deliver(hooks, signing_key, _error(), age=90)
        assert await worker.process_inbox() == 1

    assert await _state(hooks) == ("ACTIVE", None)
    [stale] = [r for r in caplog.records if r.msg == "webhook.stale_ignored"]
    assert (stale.__dict__["webhook_code"], stale.__dict__["status"]) == ("ERROR", "ACTIVE")
    # An error signed after the repair still applies.
    await _deliver(hooks, signing_key, _error("INSTITUTION_DOWN"), age=0)
    await worker.process_inbox()
    assert await _state(hooks) == ("ERROR", "INSTITUTION_DOWN")


@pytest.mark.usefixtures("connection")
async def test_a_backlog_applied_late_is_judged_by_when_plaid_signed_it(
    hooks: Hooks, signing_key: SigningKey, worker: Worker
) -> None:
    """Error then repair, both waiting in the inbox: applying the error now must not make the
    repair (signed after the error, before now) look stale."""
    await _deliver(hooks, signing_key, _error(), age=100)
    await _deliver(hooks, signing_key, webhook_body("ITEM", "LOGIN_REPAIRED", ITEM), age=50)

    while await worker.process_inbox():
        pass

    assert await _state(hooks) == ("ACTIVE", None)


@pytest.mark.usefixtures("connection")
async def test_a_late_error_does_not_undo_a_repair_of_our_own(
    hooks: Hooks, signing_key: SigningKey, worker: Worker
) -> None:
    """The repair was ours (a sync that worked, a completed re-auth: dated when it happened);
    the error was signed before it and delivered after."""
    await _deliver(hooks, signing_key, _error(), age=120)
    await worker.process_inbox()
    async with hooks.api.services.database.transaction() as session:
        found = await session.scalar(select(PlaidConnection).where(PlaidConnection.item_id == ITEM))
        assert found is not None
        await lifecycle.transition(session, found, ConnectionStatus.ACTIVE)

    await _deliver(hooks, signing_key, _error(), age=60)
    await worker.process_inbox()

    assert await _state(hooks) == ("ACTIVE", None)


@pytest.mark.usefixtures("connection")
async def test_revocation_applies_however_late(
    hooks: Hooks, signing_key: SigningKey, worker: Worker
) -> None:
    await _deliver(hooks, signing_key, _error(), age=100)
    await _deliver(hooks, signing_key, webhook_body("ITEM", "LOGIN_REPAIRED", ITEM), age=50)
    await _deliver(
        hooks, signing_key, webhook_body("ITEM", "USER_PERMISSION_REVOKED", ITEM), age=200
    )

    while await worker.process_inbox():
        pass

    assert (await _state(hooks))[0] == "REVOKED"
