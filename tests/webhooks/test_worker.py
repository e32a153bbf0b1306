"""The worker applying stored webhooks (SPEC section 5b): each handler's effect on a connection
linked through the API, idempotence under Plaid's duplicate deliveries, ordering per Item,
lease recovery, retries and failure."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from plaid_bridge.activity.audit import AuditLog
from plaid_bridge.activity.events import Event
from plaid_bridge.connections.lifecycle import STATUS_CHANGED
from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.sync.models import SyncRequest
from plaid_bridge.webhooks.models import WebhookEvent
from plaid_bridge.worker import Worker
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
DELIVERIES = 5


def payload(webhook_type: str, webhook_code: str, item_id: str, **fields: Any) -> dict[str, Any]:
    """A webhook body as Plaid shapes it."""
    return {
        "webhook_type": webhook_type,
        "webhook_code": webhook_code,
        "item_id": item_id,
        **fields,
        "environment": "sandbox",
    }


def plaid_error(error_type: str, error_code: str) -> dict[str, Any]:
    return {
        "error_type": error_type,
        "error_code": error_code,
        "error_message": error_code.lower().replace("_", " "),
        "display_message": None,
        "status": 400,
        "request_id": "req-webhook",
    }


async def store(api: Api, body: dict[str, Any], times: int = 1, **columns: Any) -> list[int]:
    """Put `body` in the inbox `times` times (Plaid retries: identical bodies, new rows)."""
    text_body = json.dumps(body, indent=2)
    rows = [
        WebhookEvent(
            webhook_type=body.get("webhook_type"),
            webhook_code=body.get("webhook_code"),
            item_id=body.get("item_id"),
            body=text_body,
            body_sha256=hashlib.sha256(text_body.encode()).hexdigest(),
            **columns,
        )
        for _ in range(times)
    ]
    async with api.services.database.transaction() as session:
        session.add_all(rows)
        await session.flush()
        return [row.id for row in rows]


@pytest.fixture
def worker(api: Api) -> Worker:
    return Worker(api.services, worker_id="test-worker", retry_base_seconds=0)


@pytest.fixture
async def item_id(api: Api) -> str:
    """A connection linked end to end, with the sync its exchange queued already taken."""
    linked: str = (await api.connect())["itemId"]
    async with api.services.database.transaction() as session:
        await session.execute(text("DELETE FROM plaid_sync_requests"))
    return linked


async def drain(worker: Worker) -> int:
    """Apply every due inbox row (the sync queue is not run, so queued syncs stay visible)."""
    total = 0
    while handled := await worker.process_inbox():
        total += handled
    return total


async def connection(api: Api, item_id: str) -> PlaidConnection:
    async with api.services.database.transaction() as session:
        found = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
    assert found is not None
    return found


async def inbox(api: Api) -> list[WebhookEvent]:
    async with api.services.database.transaction() as session:
        return list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


async def event_types(api: Api, item_id: str) -> list[str]:
    async with api.services.database.transaction() as session:
        return list(
            await session.scalars(
                select(Event.type).where(Event.item_id == item_id).order_by(Event.id)
            )
        )


async def status_changes(api: Api, item_id: str) -> list[dict[str, Any]]:
    async with api.services.database.transaction() as session:
        return list(
            await session.scalars(
                select(AuditLog.details)
                .where(AuditLog.item_id == item_id, AuditLog.action == STATUS_CHANGED)
                .order_by(AuditLog.id)
            )
        )


async def sync_requests(api: Api) -> list[SyncRequest]:
    async with api.services.database.transaction() as session:
        return list(await session.scalars(select(SyncRequest)))


async def accounts(api: Api, item_id: str) -> list[PlaidAccount]:
    found = await connection(api, item_id)
    async with api.services.database.transaction() as session:
        return list(
            await session.scalars(
                select(PlaidAccount)
                .where(PlaidAccount.connection_id == found.id)
                .order_by(PlaidAccount.account_id)
            )
        )


async def test_sync_webhooks_queue_one_coalesced_sync_and_record_progress(
    api: Api, worker: Worker, item_id: str
) -> None:
    body = payload(
        "TRANSACTIONS",
        "SYNC_UPDATES_AVAILABLE",
        item_id,
        initial_update_complete=True,
        historical_update_complete=False,
    )
    await store(api, body, DELIVERIES)
    await store(api, payload("TRANSACTIONS", "DEFAULT_UPDATE", item_id, new_transactions=3))

    assert await drain(worker) == DELIVERIES + 1
    queued = await sync_requests(api)
    assert [(r.item_id, r.state, r.reason) for r in queued] == [
        (item_id, "QUEUED", "webhook:SYNC_UPDATES_AVAILABLE")
    ]
    linked = await connection(api, item_id)
    assert (linked.initial_update_complete, linked.historical_update_complete) == (True, False)
    rows = await inbox(api)
    assert {(r.status, r.attempts, r.claimed_by) for r in rows} == {("DONE", 1, "test-worker")}
    assert all(r.processed_at is not None for r in rows)

    await store(api, payload("TRANSACTIONS", "HISTORICAL_UPDATE", item_id, new_transactions=0))
    await drain(worker)
    assert (await connection(api, item_id)).historical_update_complete is True
    assert len(await sync_requests(api)) == 1
    assert await status_changes(api, item_id) == []


async def test_login_error_needs_reauth_once_however_often_delivered(
    api: Api, worker: Worker, item_id: str
) -> None:
    body = payload("ITEM", "ERROR", item_id, error=plaid_error("ITEM_ERROR", "ITEM_LOGIN_REQUIRED"))
    await store(api, body, DELIVERIES)
    await drain(worker)

    linked = await connection(api, item_id)
    assert (linked.status, linked.error_code) == ("LOGIN_REQUIRED", "ITEM_LOGIN_REQUIRED")
    assert await status_changes(api, item_id) == [{"from": "ACTIVE", "to": "LOGIN_REQUIRED"}]
    assert (await event_types(api, item_id)).count("connection.needs_reauth") == 1
    listed = await api.client.get(f"{BASE}/connections", headers=api.auth(role="VIEWER"))
    assert listed.json()[0]["error"]["code"] == "ITEM_LOGIN_REQUIRED"


@pytest.mark.parametrize("code", ["INVALID_CREDENTIALS", "INVALID_MFA"])
async def test_other_credential_errors_also_need_the_user(
    api: Api, worker: Worker, item_id: str, code: str
) -> None:
    await store(api, payload("ITEM", "ERROR", item_id, error=plaid_error("ITEM_ERROR", code)))
    await drain(worker)
    assert (await connection(api, item_id)).status == "LOGIN_REQUIRED"


async def test_institution_error_is_a_transient_error_without_reauth(
    api: Api, worker: Worker, item_id: str
) -> None:
    error = plaid_error("INSTITUTION_ERROR", "INSTITUTION_DOWN")
    await store(api, payload("ITEM", "ERROR", item_id, error=error), DELIVERIES)
    await drain(worker)

    linked = await connection(api, item_id)
    assert (linked.status, linked.error_code) == ("ERROR", "INSTITUTION_DOWN")
    types = await event_types(api, item_id)
    assert types.count("connection.error") == 1
    assert "connection.needs_reauth" not in types
    health = await api.client.get(
        f"{BASE}/connections/{item_id}/health", headers=api.auth(role="VIEWER")
    )
    assert health.status_code == 200, health.text
    assert health.json()["needsReauth"] is False
    assert health.json()["errorCode"] == "INSTITUTION_DOWN"


async def test_a_bank_outage_does_not_hide_that_the_user_must_sign_in(
    api: Api, worker: Worker, item_id: str
) -> None:
    login = plaid_error("ITEM_ERROR", "ITEM_LOGIN_REQUIRED")
    await store(api, payload("ITEM", "ERROR", item_id, error=login))
    await store(
        api,
        payload(
            "ITEM", "ERROR", item_id, error=plaid_error("INSTITUTION_ERROR", "INSTITUTION_DOWN")
        ),
    )
    await drain(worker)
    linked = await connection(api, item_id)
    assert (linked.status, linked.error_code) == ("LOGIN_REQUIRED", "ITEM_LOGIN_REQUIRED")


async def test_permission_revoked(api: Api, worker: Worker, item_id: str) -> None:
    error = plaid_error("ITEM_ERROR", "USER_PERMISSION_REVOKED")
    await store(api, payload("ITEM", "USER_PERMISSION_REVOKED", item_id, error=error), DELIVERIES)
    await drain(worker)

    linked = await connection(api, item_id)
    assert (linked.status, linked.error_code) == ("REVOKED", "USER_PERMISSION_REVOKED")
    assert (await event_types(api, item_id)).count("connection.revoked") == 1
    assert len(await status_changes(api, item_id)) == 1


async def test_revocation_reported_as_an_item_error_also_revokes(
    api: Api, worker: Worker, item_id: str
) -> None:
    error = plaid_error("ITEM_ERROR", "USER_PERMISSION_REVOKED")
    await store(api, payload("ITEM", "ERROR", item_id, error=error))
    await drain(worker)
    assert (await connection(api, item_id)).status == "REVOKED"


async def test_pending_expiration_records_the_consent_deadline(
    api: Api, worker: Worker, item_id: str
) -> None:
    body = payload(
        "ITEM", "PENDING_EXPIRATION", item_id, consent_expiration_time="2030-01-15T13:25:17.766Z"
    )
    await store(api, body, DELIVERIES)
    await drain(worker)

    linked = await connection(api, item_id)
    assert linked.status == "PENDING_EXPIRATION"
    assert linked.consent_expires_at == datetime(2030, 1, 15, 13, 25, 17, 766000, tzinfo=UTC)
    assert (await event_types(api, item_id)).count("connection.pending_expiration") == 1
    listed = await api.client.get(f"{BASE}/connections", headers=api.auth(role="VIEWER"))
    assert listed.json()[0]["consentExpiresAt"].startswith("2030-01-15T13:25:17")


async def test_pending_disconnect_records_the_disconnect_time(
    api: Api, worker: Worker, item_id: str
) -> None:
    body = payload(
        "ITEM",
        "PENDING_DISCONNECT",
        item_id,
        reason="INSTITUTION_TOKEN_EXPIRATION",
        disconnect_time="2030-02-01T00:00:00Z",
    )
    await store(api, body, DELIVERIES)
    await drain(worker)

    linked = await connection(api, item_id)
    assert linked.status == "PENDING_EXPIRATION"
    assert linked.consent_expires_at == datetime(2030, 2, 1, tzinfo=UTC)
    assert (await event_types(api, item_id)).count("connection.pending_expiration") == 1


async def test_user_account_revoked_marks_that_account_once(
    api: Api, worker: Worker, item_id: str
) -> None:
    first, *others = await accounts(api, item_id)
    body = payload("ITEM", "USER_ACCOUNT_REVOKED", item_id, account_id=first.account_id)
    await store(api, body, DELIVERIES)
    await drain(worker)

    after = {a.account_id: a.revoked for a in await accounts(api, item_id)}
    assert after[first.account_id] is True
    assert not any(after[a.account_id] for a in others)
    assert (await event_types(api, item_id)).count("account.revoked") == 1
    assert (await connection(api, item_id)).status == "ACTIVE"


async def test_login_repaired_restores_active_and_queues_one_sync(
    api: Api, worker: Worker, item_id: str
) -> None:
    login = plaid_error("ITEM_ERROR", "ITEM_LOGIN_REQUIRED")
    await store(api, payload("ITEM", "ERROR", item_id, error=login))
    await store(api, payload("ITEM", "LOGIN_REPAIRED", item_id), DELIVERIES)
    await drain(worker)

    linked = await connection(api, item_id)
    assert (linked.status, linked.error_code, linked.error_message) == ("ACTIVE", None, None)
    assert (await event_types(api, item_id)).count("connection.repaired") == 1
    assert await status_changes(api, item_id) == [
        {"from": "ACTIVE", "to": "LOGIN_REQUIRED"},
        {"from": "LOGIN_REQUIRED", "to": "ACTIVE"},
    ]
    assert [(r.item_id, r.reason) for r in await sync_requests(api)] == [
        (item_id, "webhook:LOGIN_REPAIRED")
    ]


async def test_login_repaired_for_a_healthy_connection_changes_nothing(
    api: Api, worker: Worker, item_id: str
) -> None:
    await store(api, payload("ITEM", "LOGIN_REPAIRED", item_id))
    await drain(worker)
    assert "connection.repaired" not in await event_types(api, item_id)
    assert await sync_requests(api) == []


async def test_new_accounts_available_flags_the_connection_and_notifies_once(
    api: Api, worker: Worker, item_id: str
) -> None:
    await store(api, payload("ITEM", "NEW_ACCOUNTS_AVAILABLE", item_id, error=None), DELIVERIES)
    await drain(worker)

    assert (await connection(api, item_id)).new_accounts_available is True
    assert (await event_types(api, item_id)).count("connection.new_accounts") == 1
    listed = await api.client.get(f"{BASE}/connections", headers=api.auth(role="VIEWER"))
    assert listed.json()[0]["newAccountsAvailable"] is True


async def test_auth_verification_status_follows_the_webhooks(
    api: Api, worker: Worker, item_id: str
) -> None:
    account = (await accounts(api, item_id))[0].account_id
    await store(api, payload("AUTH", "AUTOMATICALLY_VERIFIED", item_id, account_id=account))
    await drain(worker)
    verified = {a.account_id: a for a in await accounts(api, item_id)}[account]
    assert verified.verification_status == "automatically_verified"
    assert verified.raw["verification_status"] == "automatically_verified"
    assert "account.verification_expired" not in await event_types(api, item_id)

    expired = payload("AUTH", "VERIFICATION_EXPIRED", item_id, account_id=account, error=None)
    await store(api, expired, DELIVERIES)
    await drain(worker)
    after = {a.account_id: a for a in await accounts(api, item_id)}[account]
    assert after.verification_status == "verification_expired"
    assert (await event_types(api, item_id)).count("account.verification_expired") == 1


async def test_acknowledged_unknown_and_foreign_webhooks_are_done_without_effect(
    api: Api, worker: Worker, item_id: str
) -> None:
    before = await event_types(api, item_id)
    await store(
        api,
        payload("ITEM", "WEBHOOK_UPDATE_ACKNOWLEDGED", item_id, new_webhook_url="https://x/y"),
    )
    await store(api, payload("ITEM", "SOMETHING_NEW", item_id))
    await store(api, payload("HOLDINGS", "DEFAULT_UPDATE", item_id))
    await store(api, payload("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE", "item-we-never-linked"))
    await store(api, {"webhook_type": "ITEM", "webhook_code": "ERROR"})

    assert await drain(worker) == 5
    assert {(r.status, r.last_error) for r in await inbox(api)} == {("DONE", None)}
    assert await event_types(api, item_id) == before
    assert await sync_requests(api) == []
    assert await status_changes(api, item_id) == []


async def test_removed_connection_is_not_revived_by_webhooks(
    api: Api, worker: Worker, item_id: str
) -> None:
    removed = await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth())
    assert removed.status_code == 200, removed.text
    await store(api, payload("ITEM", "LOGIN_REPAIRED", item_id))
    await store(api, payload("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE", item_id))
    await drain(worker)
    assert (await connection(api, item_id)).status == "REMOVED"
    assert await sync_requests(api) == []


async def test_a_body_that_is_not_a_json_object_fails_without_retries(
    api: Api, worker: Worker
) -> None:
    async with api.services.database.transaction() as session:
        session.add(WebhookEvent(body="[1, 2]", body_sha256="0" * 64, item_id="item-x"))
    await drain(worker)
    [row] = await inbox(api)
    assert (row.status, row.attempts) == ("FAILED", 1)
    assert row.last_error == "the body is not a JSON object"


async def test_a_failing_effect_is_retried_with_backoff_then_failed(api: Api, item_id: str) -> None:
    # A real failure of the effect's transaction: the events table is gone.
    async with api.services.database.transaction() as session:
        await session.execute(text("DROP TABLE plaid_events"))
    [event_id] = await store(api, payload("ITEM", "NEW_ACCOUNTS_AVAILABLE", item_id))

    patient = Worker(api.services, worker_id="w1", max_attempts=3, retry_base_seconds=3600)
    assert await patient.process_inbox() == 1
    [row] = await inbox(api)
    assert (row.status, row.attempts, row.claimed_by) == ("PENDING", 1, None)
    assert "plaid_events" in str(row.last_error)
    assert row.claimed_until is not None
    assert row.claimed_until > utcnow() + timedelta(minutes=50)
    assert await patient.process_inbox() == 0  # backing off: not due
    assert (await connection(api, item_id)).new_accounts_available is False  # rolled back

    eager = Worker(api.services, worker_id="w2", max_attempts=3, retry_base_seconds=0)
    async with api.services.database.transaction() as session:
        pending = await session.get(WebhookEvent, event_id)
        assert pending is not None
        pending.claimed_until = utcnow()
    assert await drain(eager) == 2
    [row] = await inbox(api)
    assert (row.status, row.attempts) == ("FAILED", 3)


async def test_an_expired_lease_is_recovered_and_a_live_one_respected(
    api: Api, worker: Worker, item_id: str
) -> None:
    other = (await api.connect(institution_id="ins_109509"))["itemId"]
    past, future = utcnow() - timedelta(seconds=1), utcnow() + timedelta(minutes=5)
    [crashed] = await store(
        api,
        payload("ITEM", "NEW_ACCOUNTS_AVAILABLE", item_id),
        status="PROCESSING",
        claimed_by="crashed-worker",
        claimed_until=past,
        attempts=1,
    )
    [busy] = await store(
        api,
        payload("ITEM", "NEW_ACCOUNTS_AVAILABLE", other),
        status="PROCESSING",
        claimed_by="live-worker",
        claimed_until=future,
        attempts=1,
    )
    [waiting] = await store(api, payload("ITEM", "LOGIN_REPAIRED", other))

    assert await drain(worker) == 1
    rows = {r.id: r for r in await inbox(api)}
    assert (rows[crashed].status, rows[crashed].attempts) == ("DONE", 2)
    assert rows[crashed].claimed_by == "test-worker"
    assert (await connection(api, item_id)).new_accounts_available is True
    # The live claim is left alone, and the same Item's later webhook waits behind it.
    assert (rows[busy].status, rows[busy].claimed_by) == ("PROCESSING", "live-worker")
    assert (rows[waiting].status, rows[waiting].attempts) == ("PENDING", 0)


async def test_a_worker_whose_lease_was_taken_over_discards_its_work(
    api: Api, item_id: str
) -> None:
    [event_id] = await store(api, payload("ITEM", "NEW_ACCOUNTS_AVAILABLE", item_id))
    slow = Worker(api.services, worker_id="slow", lease_seconds=60)
    fast = Worker(api.services, worker_id="fast")
    assert await slow._claim() == [event_id]
    # The slow worker's lease runs out before it gets to the row; another takes it over.
    async with api.services.database.transaction() as session:
        row = await session.get(WebhookEvent, event_id)
        assert row is not None
        row.claimed_until = utcnow() - timedelta(seconds=1)
    assert await fast._claim() == [event_id]

    await slow._process(event_id)
    [row] = await inbox(api)
    assert (row.status, row.claimed_by) == ("PROCESSING", "fast")
    assert (await connection(api, item_id)).new_accounts_available is False

    await fast._process(event_id)
    [row] = await inbox(api)
    assert (row.status, row.claimed_by, row.attempts) == ("DONE", "fast", 2)
    assert (await event_types(api, item_id)).count("connection.new_accounts") == 1


@pytest.mark.parametrize(
    ("first", "second", "final"),
    [("ERROR", "LOGIN_REPAIRED", "ACTIVE"), ("LOGIN_REPAIRED", "ERROR", "LOGIN_REQUIRED")],
)
async def test_an_items_webhooks_apply_in_the_order_received(
    api: Api, worker: Worker, item_id: str, first: str, second: str, final: str
) -> None:
    error = plaid_error("ITEM_ERROR", "ITEM_LOGIN_REQUIRED")
    for code in (first, second):
        await store(api, payload("ITEM", code, item_id, error=error if code == "ERROR" else None))
    # One row per Item per claim: the later one is not even claimed before the earlier is done.
    assert await worker.process_inbox() == 1
    assert [r.status for r in await inbox(api)] == ["DONE", "PENDING"]
    await drain(worker)
    assert (await connection(api, item_id)).status == final


async def test_run_once_processes_the_inbox(api: Api, worker: Worker, item_id: str) -> None:
    await store(api, payload("ITEM", "NEW_ACCOUNTS_AVAILABLE", item_id), 3)
    assert await worker.run_once() == 1  # one row per Item per pass
    assert await worker.run_once() == 1
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0
    async with api.services.database.transaction() as session:
        done = await session.scalar(
            select(func.count()).where(WebhookEvent.status == "DONE").select_from(WebhookEvent)
        )
    assert done == 3
