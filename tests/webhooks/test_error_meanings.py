"""Every Plaid code of the table of meanings (`plaid.errors.MEANINGS`) means the same to all five
of its readers: the HTTP answer (a real emulator fault on a real route), the lifecycle (what that
failed request records), the sync engine (a failed sync), health (a live check, and the verdict on
what was recorded) and the webhook handlers (a real signed ITEM/ERROR through the worker)."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.plaid.errors import (
    KNOWN_CODES,
    MEANINGS,
    ErrorMeaning,
    PlaidErrorClass,
    classify,
    meaning,
)
from plaid_bridge.services import Services
from plaid_bridge.sync.engine import sync_item
from plaid_bridge.worker import Worker
from tests.conftest import Api, make_settings
from tests.webhooks.conftest import KeyStandIn, SigningKey, webhook_body

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"

# Every code the table names, and one code no row names (its class's default row).
CODES = sorted({**KNOWN_CODES, "NO_ACCOUNTS": "ITEM_ERROR"}.items())


def test_every_class_has_a_row_and_every_status_is_a_connection_status() -> None:
    assert set(PlaidErrorClass) <= set(MEANINGS)
    statuses = {row.status for row in MEANINGS.values()} - {None}
    assert statuses <= {status.value for status in ConnectionStatus}
    # SPEC section 5: every code that needs the user answers 409 with needsReauth, except
    # ITEM_LOCKED (the user must contact the bank).
    for code, error_type in CODES:
        row = meaning(classify(error_type, code), code)
        if classify(error_type, code) is PlaidErrorClass.NEEDS_USER:
            assert (row.http_status, row.needs_reauth, row.status) == (409, True, "LOGIN_REQUIRED")
    locked = meaning(classify("ITEM_ERROR", "ITEM_LOCKED"), "ITEM_LOCKED")
    assert (locked.http_status, locked.needs_reauth) == (409, False)
    assert {"INVALID_UPDATED_USERNAME", "ACCESS_NOT_GRANTED", "INVALID_SEND_METHOD"} <= {
        code for code, error_type in CODES if meaning(classify(error_type, code), code).needs_reauth
    }


async def _status(services: Services, item_id: str) -> tuple[str, str | None]:
    async with services.database.transaction() as session:
        row = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
    assert row is not None
    return row.status, row.error_code


async def _reset(services: Services, item_id: str) -> None:
    """Back to a working connection whose status changed an hour ago (so that a webhook signed
    now is not stale)."""
    async with services.database.transaction() as session:
        await session.execute(
            update(PlaidConnection)
            .where(PlaidConnection.item_id == item_id)
            .values(
                status="ACTIVE",
                error_code=None,
                error_message=None,
                status_changed_at=utcnow() - timedelta(hours=1),
            )
        )


def _expected(row: ErrorMeaning, code: str, *, reported: bool) -> tuple[str, str | None]:
    status = row.status_after(reported=reported)
    return ("ACTIVE", None) if status is None else (status, code)


async def _fault(control: httpx.AsyncClient, endpoint: str, item_id: str, code: str) -> None:
    created = await control.post(
        "/emulator/faults",
        json={"endpoint": endpoint, "errorCode": code, "count": 10, "itemId": item_id},
    )
    assert created.status_code == 201, created.text


async def test_every_code_means_the_same_to_every_reader(
    api: Api,
    emulator_control: httpx.AsyncClient,
    key_server: tuple[KeyStandIn, str],
    signing_key: SigningKey,
) -> None:
    current = api.services.settings
    # The walk asks about one Item far more often than Plaid's per-Item limits allow.
    plaid_side = api.use(
        current.model_copy(
            update={
                "plaid_rate_limits": ",".join(
                    f"{endpoint}=10000/item,10000/client"
                    for endpoint in ("/accounts/get", "/item/get", "/transactions/sync")
                )
            }
        )
    )
    item_id = (await api.connect())["itemId"]
    # The webhook endpoint verifies against test-owned keys; the same database.
    hook_side = api.use(
        make_settings(
            database_url=current.database_url,
            plaid_api_host=key_server[1],
            var_dir=current.var_dir,
            plaid_max_retries=0,
        )
    )
    worker = Worker(hook_side, worker_id="meanings")

    def serve(services: Services) -> None:
        api.app.state.services = services
        api.services = services

    disagreements: list[str] = []

    def check(what: str, code: str, found: object, expected: object) -> None:
        if found != expected:
            disagreements.append(f"{code} {what}: {found!r}, the table says {expected!r}")

    for code, error_type in CODES:
        error_class = classify(error_type, code)
        row = meaning(error_class, code)
        serve(plaid_side)

        # 1 and 2: the HTTP answer of a request that meets the error, and what it records.
        await _reset(plaid_side, item_id)
        await _fault(emulator_control, "/accounts/get", item_id, code)
        response = await api.client.get(
            f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
        )
        await emulator_control.delete("/emulator/faults")
        error = response.json()["error"]
        check(
            "HTTP answer",
            code,
            (response.status_code, error["needsReauth"], error["retryAfter"]),
            (row.http_status, row.needs_reauth, row.retry_after),
        )
        check(
            "status after a failed request",
            code,
            await _status(plaid_side, item_id),
            _expected(row, code, reported=False),
        )

        # 4a: a live health check that meets the error.
        await _reset(plaid_side, item_id)
        await _fault(emulator_control, "/item/get", item_id, code)
        live = await api.client.get(
            f"{BASE}/connections/{item_id}/health", params={"live": "true"}, headers=api.auth()
        )
        await emulator_control.delete("/emulator/faults")
        recorded = row.status_after(reported=False)
        if error_class in (
            PlaidErrorClass.PLAID_TRANSIENT,
            PlaidErrorClass.RATE_LIMITED,
            PlaidErrorClass.INSTITUTION_TRANSIENT,
            PlaidErrorClass.NOT_READY,
            PlaidErrorClass.RESTART_SYNC,
        ):
            check("live health (transient)", code, (live.status_code, recorded), (200, None))
            check("live health needsReauth", code, live.json()["needsReauth"], False)
        elif recorded is not None:
            check("live health", code, live.status_code, 200)
            check("live health needsReauth", code, live.json()["needsReauth"], row.needs_reauth)
        else:
            check("live health", code, live.status_code, row.http_status)
        check(
            "status after a live check",
            code,
            await _status(plaid_side, item_id),
            _expected(row, code, reported=False),
        )

        # 3: a failed sync.
        await _reset(plaid_side, item_id)
        await _fault(emulator_control, "/transactions/sync", item_id, code)
        await sync_item(plaid_side, item_id, trigger="meanings")
        await emulator_control.delete("/emulator/faults")
        if error_class is not PlaidErrorClass.RATE_LIMITED:  # a rate limit is waited out
            check(
                "status after a failed sync",
                code,
                await _status(plaid_side, item_id),
                _expected(row, code, reported=True),
            )
            # 4b: health's verdict on what the sync recorded.
            verdict = await api.client.get(
                f"{BASE}/connections/{item_id}/health", headers=api.auth()
            )
            reauth = row.needs_reauth and row.status_after(reported=True) is not None
            check("health needsReauth", code, verdict.json()["needsReauth"], reauth)

        # 5: Plaid's ITEM/ERROR webhook, signed, through the endpoint and the worker.
        await _reset(plaid_side, item_id)
        serve(hook_side)
        body = webhook_body(
            "ITEM",
            "ERROR",
            item_id,
            error={"error_type": error_type, "error_code": code, "display_message": None},
        )
        delivered = await api.client.post(
            f"{BASE}/webhook",
            content=body,
            headers={
                "Content-Type": "application/json",
                "Plaid-Verification": signing_key.sign(body, iat=int(time.time())),
            },
        )
        assert delivered.status_code == 200, delivered.text
        assert await worker.process_inbox() == 1
        check(
            "status after ITEM/ERROR",
            code,
            await _status(plaid_side, item_id),
            _expected(row, code, reported=True),
        )

    assert disagreements == []
