"""A route answers only after its transaction committed: a commit that fails is an error answer,
never a 2xx, and a read right after a 2xx sees the change (SPEC §4)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from plaid_bridge.activity.audit import AuditLog
from plaid_bridge.app import create_app
from plaid_bridge.connections.models import ItemRemoval, PlaidConnection
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.serving import BackgroundServer
from tests.commit_faults import CommitFaults
from tests.conftest import Api, make_settings

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"

Call = Callable[[Api, str], Awaitable[httpx.Response]]


async def _link_token(api: Api, _item_id: str) -> httpx.Response:
    return await api.client.post(
        f"{BASE}/create-link-token", json={}, headers=api.auth(role="MEMBER")
    )


async def _remove(api: Api, item_id: str) -> httpx.Response:
    return await api.client.delete(f"{BASE}/connections/{item_id}", headers=api.auth(role="ADMIN"))


async def _sync(api: Api, item_id: str) -> httpx.Response:
    return await api.client.post(
        f"{BASE}/connections/{item_id}/sync", headers=api.auth(role="MEMBER")
    )


async def _health(api: Api, item_id: str) -> httpx.Response:
    return await api.client.get(
        f"{BASE}/connections/{item_id}/health", headers=api.auth(role="VIEWER")
    )


async def _summary(api: Api, _item_id: str) -> httpx.Response:
    return await api.client.get(f"{BASE}/health/summary", headers=api.auth(role="ADMIN"))


ROUTES: dict[str, tuple[Call, str | None]] = {
    "create link token": (_link_token, "LINK_TOKEN_CREATED"),
    "remove connection": (_remove, "CONNECTION_REMOVED"),
    "sync trigger": (_sync, "SYNC_REQUESTED"),
    "connection health": (_health, None),
    "health summary": (_summary, None),
}


@pytest.fixture
async def faults(api: Api, database_url: str) -> AsyncIterator[CommitFaults]:
    armed = CommitFaults(api.services.database.engine, database_url)
    yield armed
    armed.close()


async def _succeeded(api: Api, action: str) -> list[AuditLog]:
    async with api.services.database.transaction() as session:
        rows = await session.scalars(
            select(AuditLog).where(AuditLog.action == action, AuditLog.outcome == "SUCCESS")
        )
        return list(rows.all())


@pytest.mark.parametrize("route", ROUTES.values(), ids=list(ROUTES))
async def test_a_failed_commit_is_never_a_success(
    api: Api,
    faults: CommitFaults,
    emulator_control: httpx.AsyncClient,
    database_url: str,
    route: tuple[Call, str | None],
) -> None:
    call, action = route
    item_id: str = (await api.connect())["itemId"]
    removals_before = (
        await emulator_control.get("/emulator/calls", params={"endpoint": "/item/remove"})
    ).json()["count"]

    faults.fail_next()
    response = await call(api, item_id)

    assert faults.failed == 1
    assert response.status_code >= 500, response.text
    if database_url.startswith("postgresql"):
        # The session died under the commit: the database is unavailable, try again shortly.
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        assert response.headers["retry-after"] == "5"
    assert response.json()["requestId"] == response.headers["x-request-id"]
    if action is not None:
        assert await _succeeded(api, action) == []
    # Nothing of a removal happened: the connection as it was, and Plaid never asked.
    async with api.services.database.transaction() as session:
        connection = await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )
        owed = await session.scalar(select(ItemRemoval))
    assert connection is not None
    assert connection.status == "ACTIVE"
    assert connection.access_token_encrypted is not None
    assert owed is None
    removals = await emulator_control.get("/emulator/calls", params={"endpoint": "/item/remove"})
    assert removals.json()["count"] == removals_before

    # The same call once the database is well again succeeds.
    again = await call(api, item_id)
    assert again.status_code < 300, again.text
    if action is not None:
        assert len(await _succeeded(api, action)) == 1


async def test_a_read_right_after_a_success_sees_it(
    database_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """Over real HTTP, with every commit slowed down: the answer waits for its commit."""
    settings = make_settings(
        database_url=database_url,
        plaid_api_host=emulator.url,
        var_dir=tmp_path / "var",
        worker_mode="external",
    )
    app = create_app(settings)
    with BackgroundServer() as server:
        server.serve(app)
        services = app.state.services
        async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as client:
            api = Api(client, app, services)
            item_id: str = (await api.connect())["itemId"]
            faults = CommitFaults(services.database.engine, database_url)
            try:
                faults.delay_commits(0.4)
                removed = await api.client.delete(
                    f"{BASE}/connections/{item_id}", headers=api.auth(role="ADMIN")
                )
                assert removed.status_code == 200, removed.text
                assert removed.json()["status"] == "REMOVED"
                listed = await api.client.get(f"{BASE}/connections", headers=api.auth())
                assert listed.status_code == 200, listed.text
                assert listed.json() == []

                created = await api.client.post(
                    f"{BASE}/create-link-token", json={}, headers=api.auth(role="MEMBER")
                )
                assert created.status_code == 201, created.text
                audit = await api.client.get(f"{BASE}/audit", headers=api.auth(role="ADMIN"))
                actions = [entry["action"] for entry in audit.json()["entries"]]
                assert "LINK_TOKEN_CREATED" in actions
            finally:
                faults.close()
