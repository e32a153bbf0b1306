"""Liveness and readiness, without auth."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from plaid_bridge.app import create_app
from plaid_bridge.db import Database, utcnow
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.ops import heartbeats
from plaid_bridge.ops.models import WorkerHeartbeat
from plaid_bridge.services import Services
from plaid_bridge.serving import BackgroundServer
from plaid_bridge.worker import Worker
from tests.conftest import Api, make_settings

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


async def test_readyz_logs_nothing_of_alembic(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            assert (await api.client.get("/readyz")).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


async def test_readyz_is_503_before_migrations(api: Api, tmp_path: Path) -> None:
    api.use(
        make_settings(
            database_url=f"sqlite:///{tmp_path / 'empty.db'}",
            plaid_api_host=api.services.settings.plaid_host,
            var_dir=tmp_path,
        )
    )
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "MIGRATIONS_PENDING"
    assert response.headers["retry-after"] == "30"


async def ready(api: Api) -> httpx.Response:
    return await api.client.get("/readyz")


async def test_readyz_with_external_workers_needs_a_fresh_heartbeat(api: Api) -> None:
    current = api.services.settings
    services = api.use(
        make_settings(
            database_url=current.database_url,
            plaid_api_host=current.plaid_host,
            var_dir=current.var_dir,
            worker_mode="external",
            worker_lease_seconds=30,
        )
    )
    none = await ready(api)
    assert none.status_code == 503
    assert none.json()["error"]["code"] == "WORKER_STALE"
    assert none.json()["error"]["message"] == (
        "No worker is running; start `plaid-bridge worker` (WORKER_MODE=external)."
    )

    # An embedded worker's heartbeat does not stand in for an external one.
    await heartbeats.beat(services.database, worker_id="host:1:api", role="api")
    assert (await ready(api)).status_code == 503
    await heartbeats.beat(services.database, worker_id="host:2:worker", role="worker")
    fresh = await ready(api)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["worker"]["mode"] == "external"
    assert 0 <= fresh.json()["worker"]["heartbeatAgeSeconds"] < 30

    async with services.database.transaction() as session:
        row = await session.get(WorkerHeartbeat, "host:2:worker")
        assert row is not None
        row.beat_at = utcnow() - timedelta(seconds=95)
    stale = await ready(api)
    assert stale.status_code == 503
    assert stale.headers["retry-after"] == "5"
    assert stale.json()["error"]["message"] == (
        "No worker has reported for 95 s (WORKER_LEASE_SECONDS=30)."
    )


async def test_a_worker_beats_while_it_runs_and_forgets_its_heartbeat_on_stop(
    services: Services,
) -> None:
    worker = Worker(services, worker_id="host:7:worker", poll_interval=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run_forever(stop))
    try:
        deadline = time.monotonic() + 30
        while await heartbeats.freshest(services.database, role="worker") is None:
            assert time.monotonic() < deadline, "no heartbeat written"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running
    assert await heartbeats.freshest(services.database, role="worker") is None


async def test_heartbeats_of_workers_long_gone_are_dropped(services: Services) -> None:
    await heartbeats.beat(services.database, worker_id="old:1:worker", role="worker")
    async with services.database.transaction() as session:
        row = await session.get(WorkerHeartbeat, "old:1:worker")
        assert row is not None
        row.beat_at = utcnow() - heartbeats.FORGET_AFTER - timedelta(minutes=1)
    await heartbeats.beat(services.database, worker_id="new:2:worker", role="worker")
    async with services.database.transaction() as session:
        ids = set(await session.scalars(select(WorkerHeartbeat.worker_id)))
    assert ids == {"new:2:worker"}


async def test_readyz_of_an_api_process_follows_its_embedded_worker(
    database_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url=database_url, plaid_api_host=emulator.url, var_dir=tmp_path / "var"
    )
    with BackgroundServer() as server:
        server.serve(create_app(settings))
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            deadline = time.monotonic() + 30
            while (answer := await client.get("/readyz")).status_code != 200:
                assert answer.json()["error"]["code"] == "WORKER_STALE", answer.text
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
    assert answer.json()["worker"] == {"mode": "embedded"}
    database = Database.from_url(database_url)
    try:
        assert await heartbeats.freshest(database, role="api") is None  # forgotten at stop
    finally:
        await database.dispose()
