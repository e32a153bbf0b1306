"""A burst of updates across many Items: one SYNC_UPDATES_AVAILABLE webhook per Item, all at once.

200 Items are linked in the emulator (its own process, as Plaid is remote) and synced once; then
each Item gets new and changed transactions, `/transactions/sync` answers after 300 ms (the
emulator's latency fault), and one webhook per Item is put in the inbox in one transaction, as
the intake stores them (its NOTIFY included). One worker (`Worker.run_forever`, in this process
with its own event loop, on PostgreSQL) applies the webhooks and runs the syncs they queue. The
figure is the time from the insert until every Item's update is stored, as syncs per second;
afterwards every Item's store is checked against the emulator's ledger.

Twice: with Plaid's rate limits lifted (`sync_burst`), and with Plaid's production limits kept
by the outbound limiter (`sync_burst_limited`: the time those limits allow over the time taken).
What the limits allow: every call of the burst has to wait for a free slot in its Item's window
(50 per minute) and the client's (2,500 per minute), and no call can beat one round trip; the
worker's pool runs `CONCURRENCY` calls at once, so the best a worker of this size can do is one
round trip per `CONCURRENCY` Items, whichever of the two bounds is larger.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
import httpx
from sqlalchemy import func, select

from benchmarks.bench_database import bench_database
from benchmarks.emulator_process import emulator_process
from benchmarks.scoreboard import Figure, table
from benchmarks.sync_store import connect_item
from plaid_bridge.config import Settings
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.plaid.limits import PRODUCTION_LIMITS
from plaid_bridge.services import Services, build_services
from plaid_bridge.sync.engine import Outcome, sync_item
from plaid_bridge.sync.models import SyncRequest, SyncRun
from plaid_bridge.transactions.models import PlaidTransaction
from plaid_bridge.webhooks import intake
from plaid_bridge.worker import Worker, stop_within

ITEMS = 200
LATENCY_MS = 300
CONCURRENCY = 64
TRANSACTIONS = 20  # per Item at link time
SYNC = "/transactions/sync"
WINDOW_SECONDS = 60.0


class _PoolFull(logging.Handler):
    """Counts urllib3's "Connection pool is full, discarding connection" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "pool is full" in record.getMessage():
            self.count += 1


def _settings(url: str, emulator_url: str, var_dir: str, *, limited: bool) -> Settings:
    return Settings(
        _env_file=None,
        plaid_env="emulator",
        plaid_api_host=emulator_url,
        database_url=url,
        plaid_encryption_keys="k1:" + base64.b64encode(b"b" * 32).decode(),
        auth_jwt_secret="bench-secret-0123456789abcdef",
        # Nothing listens on the discard port: the emulator's own webhooks fail fast (the
        # burst's webhooks are stored directly, all at once).
        plaid_webhook_url="http://127.0.0.1:9/api/v1/plaid/webhook",
        plaid_timeout_seconds=60,
        # None keeps Plaid's production figures (the emulator stands in for Production).
        plaid_rate_limits=None if limited else f"{SYNC}=off",
        plaid_rate_limit_max_wait_seconds=60,
        sync_concurrency=CONCURRENCY,
        var_dir=Path(var_dir),
    )


async def _link(services: Services) -> list[str]:
    """ITEMS Items linked and synced once (the emulator's first answer is "not ready")."""
    item_ids: list[str] = []
    limiter = anyio.CapacityLimiter(32)

    async def one() -> None:
        async with limiter:
            item_id = await connect_item(services)
            synced = await sync_item(services, item_id, trigger="bench")
            assert synced.outcome is Outcome.SUCCESS, synced
            item_ids.append(item_id)

    async with anyio.create_task_group() as group:
        for _ in range(ITEMS):
            group.start_soon(one)
    return item_ids


async def _enqueue_webhooks(services: Services, item_ids: list[str]) -> None:
    """One SYNC_UPDATES_AVAILABLE per Item, stored as the intake stores them, in one commit."""
    rows = []
    for item_id in item_ids:
        document = {
            "webhook_type": "TRANSACTIONS",
            "webhook_code": "SYNC_UPDATES_AVAILABLE",
            "item_id": item_id,
            "initial_update_complete": True,
            "historical_update_complete": True,
            "environment": "production",
        }
        raw = json.dumps(document).encode()
        rows.append(intake.inbox_row(raw=raw, text=raw.decode(), document=document, verified=None))
    await services.webhook_inbox.commit(rows)


async def _synced(services: Services, since: object) -> int:
    async with services.database.transaction() as session:
        count = await session.scalar(
            select(func.count(func.distinct(SyncRun.item_id))).where(
                SyncRun.trigger == "webhook:SYNC_UPDATES_AVAILABLE",
                SyncRun.outcome == Outcome.SUCCESS.value,
                SyncRun.started_at >= since,
            )
        )
    return int(count or 0)


async def _burst(
    services: Services, control: httpx.AsyncClient, item_ids: list[str]
) -> tuple[float, float]:
    """Seconds from the webhooks' commit until every Item's update is stored, and the CPU
    seconds this process used meanwhile."""
    advanced = await control.post("/emulator/advance", json={"add": 3, "modify": 1, "days": 1})
    advanced.raise_for_status()
    worker = Worker(services, worker_id=f"bench-{uuid.uuid4().hex[:6]}")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(stop))
    while True:  # until started, and idle: the inbox is empty
        if worker.last_inbox_pass is not None:
            break
        await asyncio.sleep(0.01)
    since = utcnow()
    cpu = time.process_time()
    started = time.perf_counter()
    await _enqueue_webhooks(services, item_ids)
    while await _synced(services, since) < len(item_ids):
        if task.done():
            task.result()
            raise RuntimeError("the worker stopped")
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    while True:  # the runs settled (their requests deleted) before the worker stops
        async with services.database.transaction() as session:
            if not await session.scalar(select(func.count()).select_from(SyncRequest)):
                break
        await asyncio.sleep(0.05)
    await stop_within(task, stop, 10.0)
    return elapsed, cpu


async def _check_ledgers(
    services: Services, control: httpx.AsyncClient, item_ids: list[str]
) -> int:
    """Every Item's live stored transactions equal the emulator's ledger (ids and amounts);
    returns the number of transactions compared."""
    compared = 0
    for item_id in item_ids:
        response = await control.get("/emulator/ledger", params={"item_id": item_id})
        response.raise_for_status()
        ledger = {
            t["transaction_id"]: round(float(t["amount"]), 2)
            for t in response.json()["transactions"]
        }
        async with services.database.transaction() as session:
            rows = (
                await session.execute(
                    select(PlaidTransaction.transaction_id, PlaidTransaction.amount)
                    .join(PlaidConnection, PlaidConnection.id == PlaidTransaction.connection_id)
                    .where(PlaidConnection.item_id == item_id, PlaidTransaction.removed.is_(False))
                )
            ).all()
        stored = {transaction_id: round(float(amount), 2) for transaction_id, amount in rows}
        if stored != ledger:
            raise AssertionError(f"{item_id}: the store differs from the emulator's ledger")
        compared += len(stored)
    return compared


def _limits_allow(items: int, calls_per_item: int, latency: float, concurrency: int) -> float:
    """The least time Plaid's production limits (and a pool of `concurrency`) allow for the
    burst: calls past a window's figure wait a whole window, and every call takes one round
    trip, `concurrency` at a time."""
    figures = PRODUCTION_LIMITS[SYNC]
    waits = [0.0]
    if figures.per_item is not None:
        waits.append((calls_per_item - 1) // figures.per_item * WINDOW_SECONDS)
    if figures.per_client is not None:
        waits.append((items * calls_per_item - 1) // figures.per_client * WINDOW_SECONDS)
    rounds = math.ceil(items * calls_per_item / concurrency)
    return max(max(waits) + latency, rounds * latency)


async def _measure(url: str, emulator_url: str, var_dir: str) -> dict[str, float]:
    pool_full = _PoolFull()
    logging.getLogger("urllib3.connectionpool").addHandler(pool_full)
    lifted = build_services(_settings(url, emulator_url, var_dir, limited=False))
    limited = build_services(_settings(url, emulator_url, var_dir, limited=True))
    try:
        async with httpx.AsyncClient(base_url=emulator_url, timeout=60) as control:
            item_ids = await _link(lifted)
            fault = {"endpoint": SYNC, "latencyMs": LATENCY_MS, "count": 1_000_000}
            (await control.post("/emulator/faults", json=fault)).raise_for_status()
            free, free_cpu = await _burst(lifted, control, item_ids)
            compared = await _check_ledgers(lifted, control, item_ids)
            capped, capped_cpu = await _burst(limited, control, item_ids)
            compared += await _check_ledgers(limited, control, item_ids)
    finally:
        logging.getLogger("urllib3.connectionpool").removeHandler(pool_full)
        for services in (lifted, limited):
            await services.plaid.aclose()
            await services.database.dispose()
    return {
        "free": free,
        "capped": capped,
        "cpu_ms": (free_cpu + capped_cpu) / (2 * ITEMS) * 1000,
        "compared": compared,
        "pool_full": pool_full.count,
    }


def run() -> list[Figure]:
    with bench_database() as database:
        url = database.url
        with (
            emulator_process(seed=5, transactions=TRANSACTIONS) as emulator,
            TemporaryDirectory() as var_dir,
        ):
            measured = anyio.run(_measure, url, emulator.url, var_dir)
    latency = LATENCY_MS / 1000
    design = math.ceil(ITEMS / CONCURRENCY) * latency
    allowed = _limits_allow(ITEMS, 1, latency, CONCURRENCY)
    checked = (
        f"every store equal to the emulator's ledger ({int(measured['compared']):,} "
        f"transactions over both bursts); {int(measured['pool_full'])} 'pool is full' warnings; "
        f"worker process CPU {measured['cpu_ms']:.1f} ms per webhook and sync"
    )
    return [
        Figure(
            "sync_burst",
            ITEMS / measured["free"],
            "syncs/s",
            target=">= 100 syncs/s",
            note=(
                f"{ITEMS} Items, {LATENCY_MS} ms Plaid latency, limits lifted, one worker of "
                f"{CONCURRENCY} syncs: {measured['free']:.2f} s (the pool allows {design:.2f} s, "
                f"{ITEMS / design:.0f} syncs/s); {checked}"
            ),
        ),
        Figure(
            "sync_burst_limited",
            allowed / measured["capped"],
            "ratio",
            target=">= 0.83",
            note=(
                f"Plaid's production limits on: {measured['capped']:.2f} s taken, "
                f"{allowed:.2f} s allowed ({PRODUCTION_LIMITS[SYNC].per_item}/Item and "
                f"{PRODUCTION_LIMITS[SYNC].per_client}/client a minute, one call per Item, "
                f"{CONCURRENCY} at a time)"
            ),
        ),
    ]


if __name__ == "__main__":
    print(table(run()))
