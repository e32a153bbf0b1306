"""SIGTERM during a burst of webhooks: `plaid-bridge serve` stops accepting, answers the requests
it has begun, exits within the grace with code 0, and after a restart every webhook that was
answered 200 is applied exactly once. The others were refused or never answered, which Plaid
redelivers. Run with the worker embedded in the API and with a `plaid-bridge worker` beside it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from plaid_bridge.activity.events import Event
from plaid_bridge.connections.models import PlaidAccount
from plaid_bridge.db import Database
from plaid_bridge.webhooks.models import WebhookEvent
from plaid_bridge.worker import CLOSE_SECONDS
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, UNREACHABLE_WEBHOOK
from tests.deploy.stack import COMMAND, free_ports
from tests.waiting import eventually
from tests.webhooks.conftest import WEBHOOK_PATH, KeyStandIn, SigningKey, webhook_body
from tests.webhooks.test_worker_processes import link

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

GRACE_SECONDS = 10
# Interpreter start-up is not part of the grace, nor is its teardown on a loaded machine.
EXIT_BOUND = GRACE_SECONDS + CLOSE_SECONDS + 20
WAIT_SECONDS = 120.0
ITEMS, ACCOUNTS_EACH = 4, 40
IN_FLIGHT = 16


@dataclass
class Service:
    """`plaid-bridge serve` (and in external mode a `plaid-bridge worker`) as OS processes."""

    env: dict[str, str]
    directory: Path
    port: int
    external: bool
    started: list[asyncio.subprocess.Process]

    async def start(self, run: int) -> tuple[asyncio.subprocess.Process, ...]:
        api = await self._spawn(
            f"api-{run}", "serve", "--host", "127.0.0.1", "--port", str(self.port)
        )
        processes = (api, await self._spawn(f"worker-{run}", "worker")) if self.external else (api,)
        async with httpx.AsyncClient(timeout=5.0) as probe:

            async def up() -> bool:
                assert api.returncode is None, self.log(f"api-{run}")
                try:
                    return (await probe.get(f"{self.url}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, "the API to answer", within=WAIT_SECONDS)
        return processes

    async def _spawn(self, name: str, *argv: str) -> asyncio.subprocess.Process:
        with (self.directory / f"{name}.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                str(COMMAND),
                *argv,
                env=self.env,
                cwd=self.directory,  # no .env of the repository
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.directory / f"{name}.log").read_text(errors="replace")[-6000:]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(params=["embedded", "external"])
async def service(
    request: pytest.FixtureRequest,
    database_url: str,
    key_server: tuple[KeyStandIn, str],
    tmp_path: Path,
) -> AsyncIterator[Service]:
    [port] = free_ports(1)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": key_server[1],  # only webhook keys are asked of Plaid here
        "PLAID_WEBHOOK_URL": UNREACHABLE_WEBHOOK,
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "WORKER_MODE": request.param,
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    running = Service(env, tmp_path, port, request.param == "external", [])
    try:
        yield running
    finally:
        for process in running.started:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    process.kill()
                await process.wait()


async def test_sigterm_during_a_burst_loses_no_answered_webhook(
    service: Service, database: Database, signing_key: SigningKey
) -> None:
    account_ids = [a for accounts in await link(database, ITEMS, ACCOUNTS_EACH) for a in accounts]
    bodies = {
        account_id: webhook_body(
            "ITEM",
            "USER_ACCOUNT_REVOKED",
            f"item-{account_id.split('-')[1]}",
            account_id=account_id,
        )
        for account_id in account_ids
    }
    processes = await service.start(1)
    answers: dict[str, int | str] = {}
    gate = asyncio.Semaphore(IN_FLIGHT)
    # A connection per request: an idle kept-alive one closed by the stopping server is not
    # a request cut off.
    limits = httpx.Limits(max_keepalive_connections=0)

    async with httpx.AsyncClient(base_url=service.url, timeout=60.0, limits=limits) as client:

        async def deliver(account_id: str) -> None:
            body = bodies[account_id]
            headers = {
                "Content-Type": "application/json",
                "Plaid-Verification": signing_key.sign(body),
            }
            async with gate:
                try:
                    answer = await client.post(WEBHOOK_PATH, content=body, headers=headers)
                except httpx.TransportError as error:
                    answers[account_id] = type(error).__name__
                else:
                    answers[account_id] = answer.status_code

        async def terminate_mid_burst() -> None:
            async def a_quarter_answered() -> bool:
                return sum(code == 200 for code in answers.values()) >= len(bodies) // 4

            await eventually(
                a_quarter_answered, "a quarter of the burst answered", within=WAIT_SECONDS
            )
            for process, name in zip(processes, ("api-1", "worker-1"), strict=False):
                assert process.returncode is None, f"{name} exited early:\n{service.log(name)}"
                process.send_signal(signal.SIGTERM)

        await asyncio.gather(terminate_mid_burst(), *(deliver(a) for a in account_ids))

    for process, name in zip(processes, ("api-1", "worker-1"), strict=False):
        try:
            code = await asyncio.wait_for(process.wait(), EXIT_BOUND)
        except TimeoutError:
            raise AssertionError(f"{name} running after SIGTERM:\n{service.log(name)}") from None
        assert code == 0, service.log(name)

    outcomes = Counter(str(code) for code in answers.values())
    answered = {account_id for account_id, code in answers.items() if code == 200}
    # Some were answered before the signal, some refused after: the signal fell mid-burst.
    assert len(bodies) // 4 <= len(answered) < len(bodies), outcomes
    assert set(outcomes) <= {"200", "503", "ConnectError", "ReadError", "RemoteProtocolError"}

    async with database.transaction() as session:
        stored = Counter(
            json.loads(body)["account_id"]
            for body in await session.scalars(select(WebhookEvent.body))
        )
    # Every answered webhook was stored once, and nothing was stored without its answer: no
    # request was cut off between its commit and its 200.
    assert set(stored) == answered
    assert set(stored.values()) <= {1}

    await service.start(2)

    async def all_applied() -> bool:
        async with database.transaction() as session:
            revoked = await session.scalar(
                select(func.count()).select_from(PlaidAccount).where(PlaidAccount.revoked)
            )
        return revoked == len(answered)

    await eventually(
        all_applied, "every answered webhook applied after the restart", within=WAIT_SECONDS
    )
    async with database.transaction() as session:
        revoked_ids = set(
            await session.scalars(select(PlaidAccount.account_id).where(PlaidAccount.revoked))
        )
        notices = Counter(
            str(data["accountId"])
            for data in await session.scalars(
                select(Event.data).where(Event.type == "account.revoked")
            )
        )
        statuses = set(await session.scalars(select(WebhookEvent.status)))
    assert revoked_ids == answered
    assert notices == Counter(answered)  # each applied exactly once
    assert statuses == {"DONE"}
