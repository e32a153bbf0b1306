"""A standalone worker's `/healthz` and `/metrics` (`plaid-bridge worker --port N`), and its
liveness: alive while its inbox loop finishes passes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.ops.metrics import Metrics
from plaid_bridge.ops.worker_http import worker_app
from plaid_bridge.services import Services
from plaid_bridge.worker import Worker
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, UNREACHABLE_WEBHOOK, Api, make_settings
from tests.deploy.stack import free_ports

pytestmark = pytest.mark.anyio
COMMAND = Path(sys.executable).with_name("plaid-bridge")
WAIT_SECONDS = 60.0


async def test_the_worker_command_serves_its_health_and_metrics(
    database_url: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    [port] = free_ports(1)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "PLAID_API_HOST": emulator.url,
        "PLAID_WEBHOOK_URL": UNREACHABLE_WEBHOOK,
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "VAR_DIR": str(tmp_path / "var"),
        "WORKER_MODE": "external",
    }
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        "worker",
        "--port",
        str(port),
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + WAIT_SECONDS
            while True:
                try:
                    health = await client.get("/healthz")
                    if health.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the worker's /healthz never answered 200"
                await asyncio.sleep(0.05)
            assert health.json() == {"status": "ok"}
            scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        names = {family.name for family in text_string_to_metric_families(scraped.text)}
        assert {"plaid_bridge_webhooks", "plaid_bridge_webhook_inbox_rows"} <= names
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), WAIT_SECONDS)
        assert process.stderr is not None
        err = (await process.stderr.read()).decode()
    assert code == 0, err


async def test_a_worker_whose_inbox_loop_stalls_is_not_alive(services: Services) -> None:
    # Passes come a second apart at most (the poll interval), so a 0.2 s lease runs out.
    worker = Worker(services, worker_id="w", lease_seconds=0.2, poll_interval=1.0)
    assert worker.stale_reason() == "the worker has not finished a pass yet"
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run_forever(stop))
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while worker.stale_reason() is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        while (reason := worker.stale_reason()) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert reason.startswith("the inbox loop has not finished a pass for ")
    finally:
        stop.set()
        await running


async def test_healthz_answers_503_with_the_reason(services: Services) -> None:
    reasons: list[str | None] = [None, "the inbox loop has not finished a pass for 90 s"]
    app = worker_app(Metrics(), services.database, alive=lambda: reasons[0])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        assert (await client.get("/healthz")).status_code == 200
        reasons.pop(0)
        stale = await client.get("/healthz")
    assert stale.status_code == 503
    assert stale.json() == {
        "status": "stale",
        "reason": "the inbox loop has not finished a pass for 90 s",
    }


async def test_readyz_turns_unready_when_the_only_worker_is_killed(
    api: Api, emulator: EmulatorServer, tmp_path: Path
) -> None:
    current = api.services.settings
    api.use(
        make_settings(
            database_url=current.database_url,
            plaid_api_host=current.plaid_host,
            var_dir=current.var_dir,
            worker_mode="external",
            worker_lease_seconds=2,
        )
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": current.database_url,
        "PLAID_API_HOST": emulator.url,
        "PLAID_WEBHOOK_URL": UNREACHABLE_WEBHOOK,
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "VAR_DIR": str(tmp_path / "var"),
        "WORKER_MODE": "external",
        "WORKER_LEASE_SECONDS": "2",
    }
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        "worker",
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def until(status: int) -> httpx.Response:
        deadline = time.monotonic() + WAIT_SECONDS
        while (answer := await api.client.get("/readyz")).status_code != status:
            assert time.monotonic() < deadline, answer.text
            await asyncio.sleep(0.05)
        return answer

    try:
        assert (await until(200)).json()["worker"]["mode"] == "external"
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), WAIT_SECONDS)
        killed_at = time.monotonic()
        stale = await until(503)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # The killed worker's row stays, and ages past the lease.
    assert stale.json()["error"]["code"] == "WORKER_STALE"
    assert stale.json()["error"]["message"].startswith("No worker has reported for ")
    assert time.monotonic() - killed_at < WAIT_SECONDS
