"""Syncing an Item of 100,000 transactions from the emulator into PostgreSQL.

The engine runs as in production: `/transactions/sync` pages of 500 over real HTTP from the
emulator in its own process, staged with binary COPY, applied with set-based statements in one
transaction. Figures: transactions per second end to end and for the apply step, the process's
peak resident memory during the sync, and the apply step against a binary COPY of the same rows
into a table of the same shape, indexes and foreign key in the same database, measured in the
same run. The apply step is the time the engine spends writing (on PostgreSQL each page is
written while the next is fetched), so it overlaps the end-to-end time rather than adding to it.

The CPU each party used during the sync (this process, its PostgreSQL backends, the emulator)
shows where the machine's cores went: the sum per transaction, spread over every core, bounds
what any end-to-end figure on this machine can reach.

PostgreSQL comes from BENCH_DATABASE_URL (else TEST_DATABASE_URL, else the local default); the
benchmark creates a database of its own there and drops it afterwards.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
import psycopg
from sqlalchemy import func, select

from benchmarks.bench_database import bench_database
from benchmarks.cpu import total_cpu_seconds, used_since
from benchmarks.emulator_process import emulator_process
from benchmarks.scoreboard import Figure, table
from plaid_bridge.config import Settings
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.services import Services, build_services
from plaid_bridge.sync.engine import Outcome, SyncResult, sync_item
from plaid_bridge.sync.writer import STORE_COLUMNS, STORE_TYPES
from plaid_bridge.transactions.models import PlaidTransaction

TRANSACTIONS = 100_000
ENCRYPTION_KEYS = "k1:" + base64.b64encode(b"b" * 32).decode()
JWT_SECRET = "bench-secret-0123456789abcdef0123"


def _peak_rss_reset() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def connect_item(services: Services) -> str:
    """A new Item of the emulator, stored as a connection of `bench-org`, not yet synced."""
    plaid = services.plaid
    public = await plaid.sandbox_public_token_create(institution_id="ins_109508")
    exchanged = await plaid.exchange_public_token(public_token=public.public_token)
    async with services.database.transaction() as session:
        session.add(
            PlaidConnection(
                org_id="bench-org",
                user_id="bench-user",
                item_id=exchanged.item_id,
                access_token_encrypted=services.cipher.encrypt(
                    exchanged.access_token, exchanged.item_id
                ),
            )
        )
    # The emulator answers the first call "not ready", as Plaid does right after the exchange.
    first = await sync_item(services, exchanged.item_id, trigger="bench")
    assert first.outcome is Outcome.NOT_READY, first
    return exchanged.item_id


@dataclass(frozen=True, slots=True)
class _Measured:
    result: SyncResult
    elapsed: float
    peak_mib: float
    cpu: dict[str, float]
    """CPU seconds used during the sync: service, PostgreSQL backends, emulator."""


def _backends(url: str) -> list[int]:
    """The server processes of the benchmark's database (the service's pooled connections)."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


async def _sync(services: Services, item_id: str, libpq_url: str, emulator_pid: int) -> _Measured:
    backends_before = total_cpu_seconds(_backends(libpq_url))
    emulator_before = total_cpu_seconds([emulator_pid])
    _peak_rss_reset()
    own = time.process_time()
    started = time.perf_counter()
    result = await sync_item(services, item_id, trigger="bench")
    elapsed = time.perf_counter() - started
    own = time.process_time() - own
    peak = _peak_rss_mib()
    cpu = {
        "service": own,
        "PostgreSQL": used_since(backends_before, total_cpu_seconds(_backends(libpq_url))),
        "emulator": used_since(emulator_before, total_cpu_seconds([emulator_pid])),
    }
    assert result.outcome is Outcome.SUCCESS, result
    async with services.database.transaction() as session:
        stored = await session.scalar(select(func.count()).select_from(PlaidTransaction))
    assert stored == result.added == TRANSACTIONS, (stored, result.added)
    return _Measured(result, elapsed, peak, cpu)


def _copy_baseline(url: str) -> float:
    """Seconds to binary-COPY the stored rows into a same-shaped table: its indexes, and the
    foreign key to the connection that every stored row is checked against."""
    with psycopg.connect(url) as connection:
        as_text = STORE_COLUMNS.replace("category", "category::text").replace("raw", "raw::text")
        rows = connection.execute(f"SELECT {as_text} FROM plaid_transactions").fetchall()
        connection.execute("CREATE TABLE bench_copy (LIKE plaid_transactions INCLUDING ALL)")
        connection.execute(
            "ALTER TABLE bench_copy ADD FOREIGN KEY (connection_id) REFERENCES plaid_connections"
        )
        connection.commit()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            # The very columns and wire types the sync engine's COPY uses.
            statement = f"COPY bench_copy ({STORE_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with cursor.copy(statement) as copy:
                copy.set_types(list(STORE_TYPES))
                for row in rows:
                    copy.write_row(row)
        connection.commit()
        return time.perf_counter() - started


def bench_settings(database_url: str, plaid_url: str, var_dir: Path) -> Settings:
    """The service's settings against the benchmark's database and emulator."""
    return Settings(
        _env_file=None,
        plaid_env="emulator",
        plaid_api_host=plaid_url,
        database_url=database_url,
        plaid_encryption_keys=ENCRYPTION_KEYS,
        auth_jwt_secret=JWT_SECRET,
        plaid_timeout_seconds=120,
        # Plaid allows 50 pages a minute per Item: lifted to measure the service itself.
        plaid_rate_limits="/transactions/sync=100000/item,100000/client",
        var_dir=var_dir,
    )


def run() -> list[Figure]:
    with bench_database() as database:
        with (
            emulator_process(seed=3, transactions=TRANSACTIONS) as emulator,
            TemporaryDirectory() as var_dir,
        ):
            services = build_services(bench_settings(database.url, emulator.url, Path(var_dir)))

            async def measure() -> _Measured:
                try:
                    item_id = await connect_item(services)
                    return await _sync(services, item_id, database.libpq_url, emulator.pid)
                finally:
                    await services.plaid.aclose()
                    await services.database.dispose()

            measured = anyio.run(measure)
        copy_seconds = _copy_baseline(database.libpq_url)
    result = measured.result
    assert result.apply_seconds is not None
    apply_rate = TRANSACTIONS / result.apply_seconds
    copy_rate = TRANSACTIONS / copy_seconds
    per_txn = {party: seconds / TRANSACTIONS * 1e6 for party, seconds in measured.cpu.items()}
    cores = os.cpu_count() or 1
    bound = cores / (sum(measured.cpu.values()) / TRANSACTIONS)
    split = ", ".join(f"{party} {micros:.0f}" for party, micros in per_txn.items())
    own_cpu = per_txn.get("service")
    figures = [
        Figure(
            "initial_sync",
            TRANSACTIONS / measured.elapsed,
            "tx/s",
            copy_rate,
            target=">= 0.75x",
            note=f"end to end, {TRANSACTIONS:,} transactions; baseline binary COPY, same rows",
        ),
        Figure(
            "initial_sync_apply",
            apply_rate,
            "tx/s",
            copy_rate,
            note=f"the writing step alone, {result.pages} pages",
        ),
        Figure("initial_sync_peak_memory", measured.peak_mib, "MiB", target="< 400 MiB"),
        Figure(
            "initial_sync_cpu",
            sum(per_txn.values()),
            "us/tx",
            note=f"{split} us; {cores} cores cap end to end at {bound:,.0f} tx/s",
        ),
    ]
    if own_cpu is not None:
        figures.append(
            Figure("initial_sync_service_cpu", own_cpu, "us/tx", target="<= 12 us", better="lower")
        )
    return figures


if __name__ == "__main__":
    print(table(run()))
