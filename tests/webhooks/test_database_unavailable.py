"""A database that cannot be reached answers 503 DATABASE_UNAVAILABLE with `Retry-After` on every
data route and on the webhook (Plaid redelivers what is not answered 200), never 500; a statement
that is wrong stays a 500. Real failures: the PostgreSQL database dropped under the running
service, or a server that is not there; the SQLite file's folder gone."""

from __future__ import annotations

import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database
from plaid_bridge.errors import database_unavailable
from tests.conftest import Api, PostgresDatabases, make_settings
from tests.webhooks.conftest import Hooks, SigningKey, webhook_body

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
ITEM = "item-db"

Request = Callable[[Api], Awaitable[httpx.Response]]


def _get(path: str, role: str = "VIEWER") -> Request:
    async def call(api: Api) -> httpx.Response:
        return await api.client.get(path, headers=api.auth(role=role))

    return call


def _send(method: str, path: str, role: str) -> Request:
    async def call(api: Api) -> httpx.Response:
        return await api.client.request(method, path, headers=api.auth(role=role))

    return call


DATA_ROUTES: dict[str, Request] = {
    "list connections": _get(f"{BASE}/connections"),
    "accounts": _get(f"{BASE}/accounts/{ITEM}"),
    "transactions": _get(f"{BASE}/transactions"),
    "transactions feed": _get(f"{BASE}/transactions/{ITEM}/sync"),
    "events": _get(f"{BASE}/events"),
    "audit": _get(f"{BASE}/audit", role="ADMIN"),
    "health": _get(f"{BASE}/connections/{ITEM}/health"),
    "health summary": _get(f"{BASE}/health/summary", role="ADMIN"),
    "sync trigger": _send("POST", f"{BASE}/connections/{ITEM}/sync", "MEMBER"),
    "remove connection": _send("DELETE", f"{BASE}/connections/{ITEM}", "ADMIN"),
    "webhook replay": _send("POST", f"{BASE}/webhooks/1/replay", "ADMIN"),
}


@pytest.fixture
async def breakable(
    hooks: Hooks,
    database_url: str,
    tmp_path: Path,
    postgres_databases: PostgresDatabases | None,
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The app on a database holding one connection; the returned function makes that
    database unreachable under the running service."""
    url = database_url
    if url.startswith("sqlite"):
        folder = tmp_path / "db"
        folder.mkdir()
        copy = folder / "plaid_bridge.db"
        shutil.copyfile(make_url(url).database or "", copy)
        url = f"sqlite:///{copy}"
    current = hooks.api.services.settings
    hooks.api.use(
        make_settings(
            database_url=url,
            plaid_api_host=current.plaid_host,
            var_dir=current.var_dir,
            plaid_max_retries=0,
        )
    )
    database = hooks.api.services.database
    async with database.transaction() as session:
        session.add(PlaidConnection(org_id="o1", user_id="u1", item_id=ITEM))

    threads_before: set[threading.Thread] = set()

    async def break_it() -> None:
        threads_before.update(threading.enumerate())
        if url.startswith("sqlite"):
            shutil.rmtree(tmp_path / "db")
            # Open connections keep an unlinked file alive; a new one finds nothing to open.
            await database.engine.dispose()
        else:
            assert postgres_databases is not None
            postgres_databases.drop(url)  # WITH (FORCE): ends the service's sessions too

    yield break_it
    # aiosqlite stops the thread of a connection that failed to open without waiting for it;
    # let those threads end while this test's event loop is still there to hear from them.
    if threads_before:
        for thread in set(threading.enumerate()) - threads_before:
            if "_connection_worker_thread" in thread.name:
                thread.join(timeout=5)


@pytest.mark.parametrize("route", DATA_ROUTES.values(), ids=list(DATA_ROUTES))
async def test_data_routes_answer_503_with_retry_after(
    hooks: Hooks, breakable: Callable[[], Awaitable[None]], route: Request
) -> None:
    working = await route(hooks.api)  # allowed, and served while the database is there
    assert working.status_code < 500, working.text
    assert working.status_code not in (401, 403), working.text
    await breakable()

    response = await route(hooks.api)

    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert (error["code"], error["retryAfter"]) == ("DATABASE_UNAVAILABLE", 5)
    assert response.json()["requestId"] == response.headers["x-request-id"]


async def test_a_verified_webhook_answers_503_so_plaid_redelivers(
    hooks: Hooks, breakable: Callable[[], Awaitable[None]], signing_key: SigningKey
) -> None:
    await breakable()
    body = webhook_body(item_id=ITEM)

    response = await hooks.post(body, signing_key.sign(body))

    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"


async def test_readyz_still_answers_503(
    hooks: Hooks, breakable: Callable[[], Awaitable[None]]
) -> None:
    await breakable()

    assert (await hooks.api.client.get("/readyz")).status_code == 503


async def test_a_server_that_is_not_there_is_unavailable(hooks: Hooks, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a closed port is a PostgreSQL failure")
    current = hooks.api.services.settings
    closed = make_url(database_url).set(port=1).render_as_string(hide_password=False)
    hooks.api.use(
        make_settings(
            database_url=closed, plaid_api_host=current.plaid_host, var_dir=current.var_dir
        )
    )

    response = await hooks.api.client.get(f"{BASE}/connections", headers=hooks.api.auth())

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    body = webhook_body()
    hooks.keys.add(key := SigningKey())
    assert (await hooks.post(body, key.sign(body))).status_code == 503


async def test_statement_errors_are_not_unavailability(database: Database) -> None:
    """Integrity and programming errors are bugs (500), not an outage (503)."""
    failures: list[BaseException] = []
    for statement in (
        "INSERT INTO plaid_connections (id, org_id, user_id, item_id, status) "
        "VALUES ('a', 'o', 'u', 'dup', 'ACTIVE'), ('b', 'o', 'u', 'dup', 'ACTIVE')",
        "SELECT no_such_column FROM plaid_connections",
        "SELECT * FROM no_such_table",
    ):
        try:
            async with database.transaction() as session:
                await session.execute(text(statement))
        except Exception as error:
            failures.append(error)
    assert len(failures) == 3
    assert [database_unavailable(error) for error in failures] == [False, False, False]
