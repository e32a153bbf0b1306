"""`plaid-bridge worker` as OS processes: graceful stop on SIGTERM, and on PostgreSQL two workers
sharing 1,000 webhooks, one of them killed while it is held inside an apply (the test holds the
row that apply must change), with every webhook applied exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.engine import make_url

from plaid_bridge.activity.events import Event
from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from plaid_bridge.db import Database, utcnow
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.webhooks.models import WebhookEvent
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, UNREACHABLE_WEBHOOK
from tests.waiting import eventually

pytestmark = pytest.mark.anyio
WAIT_SECONDS = 90.0
LEASE_SECONDS = 3
COMMAND = Path(sys.executable).with_name("plaid-bridge")


@dataclass
class WorkerProcess:
    """A running `plaid-bridge worker`, its log lines collected as they come."""

    process: asyncio.subprocess.Process
    reader: asyncio.Task[bytes] = field(init=False)

    def __post_init__(self) -> None:
        assert self.process.stderr is not None
        self.reader = asyncio.ensure_future(self.process.stderr.read())

    @property
    def worker_id(self) -> str:
        """The id it claims rows under (host:pid:role)."""
        return f"{os.uname().nodename}:{self.process.pid}:worker"

    async def finish(self, signum: signal.Signals) -> tuple[int, list[dict[str, object]]]:
        """Send `signum`, wait for the exit, return the exit code and the JSON log lines."""
        if self.process.returncode is None:
            self.process.send_signal(signum)
        try:
            code = await asyncio.wait_for(self.process.wait(), WAIT_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            log = (await self.reader).decode(errors="replace")
            raise AssertionError(
                f"the worker did not exit within {WAIT_SECONDS:.0f} s of {signum.name}; "
                f"its log:\n{log[-8000:]}"
            ) from None
        output = await asyncio.wait_for(self.reader, WAIT_SECONDS)
        lines = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
        return code, lines


@pytest.fixture
async def start_worker(
    database_url: str, emulator: EmulatorServer, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[WorkerProcess]]]:
    """Starts `plaid-bridge worker` processes on the test database; kills leftovers."""
    started: list[WorkerProcess] = []
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": emulator.url,
        "PLAID_WEBHOOK_URL": UNREACHABLE_WEBHOOK,
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "WORKER_LEASE_SECONDS": str(LEASE_SECONDS),
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }

    async def start() -> WorkerProcess:
        process = await asyncio.create_subprocess_exec(
            str(COMMAND),
            "worker",
            env=env,
            cwd=tmp_path,  # no .env of the repository
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = WorkerProcess(process)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.returncode is None:
            worker.process.kill()
            await worker.process.wait()
        worker.reader.cancel()


async def link(database: Database, items: int, accounts_each: int) -> list[list[str]]:
    """Connections (no token needed: these webhooks never call Plaid) with their accounts;
    returns the account ids per Item."""
    ids = [[f"acc-{i}-{j}" for j in range(accounts_each)] for i in range(items)]
    async with database.transaction() as session:
        for i, account_ids in enumerate(ids):
            connection = PlaidConnection(
                org_id="o1", user_id="u1", item_id=f"item-{i}", last_synced_at=utcnow()
            )
            connection.accounts = [
                PlaidAccount(account_id=a, name=a, type="depository", raw={"account_id": a})
                for a in account_ids
            ]
            session.add(connection)
    return ids


async def enqueue_revocations(database: Database, account_ids: list[list[str]]) -> None:
    """One USER_ACCOUNT_REVOKED per account, Items interleaved as deliveries would be."""
    rows = []
    for j in range(max(len(a) for a in account_ids)):
        for i, accounts in enumerate(account_ids):
            body = json.dumps(
                {
                    "webhook_type": "ITEM",
                    "webhook_code": "USER_ACCOUNT_REVOKED",
                    "item_id": f"item-{i}",
                    "account_id": accounts[j],
                    "environment": "sandbox",
                },
                indent=2,
            )
            rows.append(
                WebhookEvent(
                    webhook_type="ITEM",
                    webhook_code="USER_ACCOUNT_REVOKED",
                    item_id=f"item-{i}",
                    body=body,
                    body_sha256="0" * 64,
                )
            )
    async with database.transaction() as session:
        session.add_all(rows)


async def count(database: Database, *where: ColumnElement[bool]) -> int:
    async with database.transaction() as session:
        statement = select(func.count()).select_from(WebhookEvent).where(*where)
        return int(await session.scalar(statement) or 0)


async def test_worker_command_applies_webhooks_and_stops_on_sigterm(
    database: Database, start_worker: Callable[[], Awaitable[WorkerProcess]]
) -> None:
    [[account_id]] = await link(database, items=1, accounts_each=1)
    worker = await start_worker()
    await enqueue_revocations(database, [[account_id]])

    async def done() -> bool:
        return await count(database, WebhookEvent.status == "DONE") == 1

    await eventually(done, "the webhook done", within=WAIT_SECONDS)
    code, lines = await worker.finish(signal.SIGTERM)
    assert code == 0
    events = [line["event"] for line in lines]
    assert "webhook.processed" in events
    assert events[-1] == "worker.stopped"
    async with database.transaction() as session:
        account = await session.scalar(select(PlaidAccount))
    assert account is not None
    assert account.revoked is True


@pytest.mark.slow
async def test_two_worker_processes_share_the_inbox_and_survive_a_kill(
    database_url: str, database: Database, start_worker: Callable[[], Awaitable[WorkerProcess]]
) -> None:
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("concurrent workers need PostgreSQL (SKIP LOCKED); SQLite has one writer")
    account_ids = await link(database, items=20, accounts_each=50)
    total = 1000
    await enqueue_revocations(database, account_ids)
    # The revocation of this account cannot finish while the test holds its row: the worker that
    # claims it stays inside the apply, its claim open, until it is killed. No race with the kill.
    blocked_account = account_ids[0][-1]  # its Item's last: no queue of its rows behind it
    async with database.transaction() as blocker:
        await blocker.execute(
            select(PlaidAccount).where(PlaidAccount.account_id == blocked_account).with_for_update()
        )
        first, second = await start_worker(), await start_worker()

        async def a_worker_waits_on_the_account() -> bool:
            # A transaction keeps its first view of the statistics unless told to drop it.
            await blocker.execute(text("SELECT pg_stat_clear_snapshot()"))
            waiting = await blocker.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                )
            )
            return bool(waiting)

        await eventually(
            a_worker_waits_on_the_account, "a worker held inside the apply", within=WAIT_SECONDS
        )
        # The held row is locked by the waiting worker's transaction: its claim cannot move.
        async with database.transaction() as session:
            holder = await session.scalar(
                select(WebhookEvent.claimed_by).where(
                    WebhookEvent.status == "PROCESSING",
                    WebhookEvent.body.contains(f'"{blocked_account}"'),
                )
            )
        doomed, survivor = (first, second) if holder == first.worker_id else (second, first)
        assert holder == doomed.worker_id
        doomed.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(doomed.process.wait(), WAIT_SECONDS)
        async with database.transaction() as session:
            lost = set(
                await session.scalars(
                    select(WebhookEvent.id).where(
                        WebhookEvent.status == "PROCESSING",
                        WebhookEvent.claimed_by == doomed.worker_id,
                    )
                )
            )
    assert lost, "the killed worker held no claim"

    async def all_done() -> bool:
        return await count(database, WebhookEvent.status == "DONE") == total

    await eventually(all_done, "every webhook done after the lease ran out", within=WAIT_SECONDS)
    survivor_code, survivor_lines = await survivor.finish(signal.SIGTERM)
    _, doomed_lines = await doomed.finish(signal.SIGKILL)
    assert survivor_code == 0

    async with database.transaction() as session:
        rows = list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))
        revoked = await session.scalar(
            select(func.count()).select_from(PlaidAccount).where(PlaidAccount.revoked)
        )
        notices = list(
            await session.scalars(select(Event.data).where(Event.type == "account.revoked"))
        )
    assert len(rows) == total
    assert {r.status for r in rows} == {"DONE"}
    # The killed worker's open claims were taken over by the survivor once their lease ran out.
    # (A busy worker may also lose a lease to the other before that: a claim more, never an
    # effect more, as the checks below show.)
    assert {r.attempts >= 2 for r in rows if r.id in lost} == {True}
    assert {r.claimed_by for r in rows if r.id in lost} == {survivor.worker_id}
    # Each effect once: every account revoked, one notice per account.
    assert revoked == total
    per_account = Counter(str(n["accountId"]) for n in notices)
    assert len(per_account) == total
    assert set(per_account.values()) == {1}
    # Each row applied by one worker only, the one the row records.
    logged = {
        name: [int(str(line["event_id"])) for line in lines if line["event"] == "webhook.processed"]
        for name, lines in (("survivor", survivor_lines), ("doomed", doomed_lines))
    }
    assert len(set(logged["survivor"]) | set(logged["doomed"])) == sum(map(len, logged.values()))
    assert set(logged["survivor"]) == {r.id for r in rows if r.claimed_by == survivor.worker_id}
    assert set(logged["doomed"]) <= {r.id for r in rows if r.claimed_by == doomed.worker_id}
    # An Item's webhooks were applied in the order received, across both workers.
    by_item: dict[str | None, list[WebhookEvent]] = {}
    for row in rows:
        by_item.setdefault(row.item_id, []).append(row)
    for item_rows in by_item.values():
        finished = [r.processed_at for r in item_rows]
        assert None not in finished
        assert finished == sorted(finished)  # type: ignore[type-var]
        assert len(set(finished)) == len(finished)
