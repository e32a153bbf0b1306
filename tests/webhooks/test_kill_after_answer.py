"""A webhook answered 200 is durable: the real `plaid-bridge serve` process receives a burst of
signed webhooks, stored by group commit, and is killed (SIGKILL, no shutdown of any kind) the
moment the last 200 is in; every webhook answered 200 is in the inbox afterwards."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from plaid_bridge.db import Database
from plaid_bridge.webhooks.models import WebhookEvent
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, UNREACHABLE_WEBHOOK
from tests.dev_process import free_port
from tests.webhooks.conftest import WEBHOOK_PATH, KeyStandIn, SigningKey, webhook_body

pytestmark = pytest.mark.anyio
COMMAND = Path(sys.executable).with_name("plaid-bridge")
READY_SECONDS = 60.0
WEBHOOKS = 120
CONNECTIONS = 60


@pytest.fixture
async def serve(
    database_url: str, key_server: tuple[KeyStandIn, str], tmp_path: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`plaid-bridge serve` on the test database, verifying with the key stand-in, its worker
    external (the rows stay as received); killed at the end whatever happened."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": key_server[1],
        "PLAID_WEBHOOK_URL": UNREACHABLE_WEBHOOK,
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "WORKER_MODE": "external",
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_FORMAT": "json",
    }
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        "serve",
        "--port",
        str(port),
        env=env,
        cwd=tmp_path,  # no .env of the repository
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        async with httpx.AsyncClient(trust_env=False) as client:
            while True:
                assert process.returncode is None, "serve exited before it was up"
                try:
                    if (await client.get(f"{url}/healthz", timeout=2)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"serve not up within {READY_SECONDS} s"
                await asyncio.sleep(0.05)
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_every_webhook_answered_200_survives_a_kill_right_after_the_answer(
    serve: tuple[asyncio.subprocess.Process, str],
    keys: KeyStandIn,
    database: Database,
) -> None:
    process, url = serve
    key = keys.add(SigningKey())
    bodies = [webhook_body(item_id=f"item-{n}") for n in range(WEBHOOKS)]
    headers = [key.sign(body) for body in bodies]
    limits = httpx.Limits(max_connections=CONNECTIONS)
    async with httpx.AsyncClient(
        base_url=url, limits=limits, timeout=30, trust_env=False
    ) as client:
        # The key fetched and cached first, so the burst below is all verification and storage.
        warm = webhook_body(item_id="item-warm")
        assert (
            await client.post(WEBHOOK_PATH, content=warm, headers=_signed(key, warm))
        ).is_success

        async def post(n: int) -> tuple[int, int]:
            response = await client.post(
                WEBHOOK_PATH,
                content=bodies[n],
                headers={"Plaid-Verification": headers[n], "Content-Type": "application/json"},
            )
            return n, response.status_code

        answered: dict[int, int] = {}
        for finished in asyncio.as_completed([post(n) for n in range(WEBHOOKS)]):
            n, status = await finished
            answered[n] = status
        process.send_signal(signal.SIGKILL)  # the moment the last answer is in
    assert await process.wait() == -signal.SIGKILL

    accepted = {f"item-{n}" for n, status in answered.items() if status == 200}
    assert len(accepted) == WEBHOOKS, sorted(set(answered.values()))
    async with database.transaction() as session:
        stored = set(await session.scalars(select(WebhookEvent.item_id)))
        assert accepted <= stored
        if database.dialect == "postgresql":
            # Deliveries shared transactions: fewer transactions (xmin) than rows.
            transactions = await session.scalar(
                text("SELECT count(DISTINCT xmin::text) FROM plaid_webhook_events")
            )
            assert transactions is not None
            assert transactions < len(stored)


def _signed(key: SigningKey, body: bytes) -> dict[str, str]:
    return {"Plaid-Verification": key.sign(body), "Content-Type": "application/json"}
