"""The API's own cost on its busiest light route, and how fast a process is ready to serve.

`link_token_overhead_c1` / `_c10`: `POST /api/v1/plaid/create-link-token` (real JWT, per-user
limit, audit row, one transaction, the SDK's call to Plaid) against the emulator's own
`/link/token/create` called directly with the body the SDK sends, both at the same concurrency,
in interleaved rounds whose order flips every round. The figure is the p50 of the service call
minus the p50 of the direct call: what the service adds to the Plaid call it makes. The emulator
and the service (`plaid-bridge serve`, PostgreSQL, embedded worker) each run in their own process;
the emulator keeps its state in memory only (its state file, rewritten after every change, would
grow with each Link token and bill its cost to whichever side ran last).

`startup_ready`: seconds from spawning `plaid-bridge serve` to its first 200 from `/readyz`,
migrations already current; the median of three starts. Its baseline is the floor any such
service pays on this machine at that moment: a bare FastAPI app under uvicorn whose `/readyz`
runs `SELECT 1` on the same database through SQLAlchemy and psycopg, started the same way,
the two alternating.
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from jose import jwt

from benchmarks.bench_database import bench_database
from benchmarks.emulator_process import _free_port, emulator_process
from benchmarks.scoreboard import Figure, table
from plaid_bridge.config import API_PREFIX, Settings

JWT_SECRET = "bench-secret-0123456789abcdef0123"
ROUNDS = 6
PER_ROUND = {1: 40, 10: 160}
"""Calls per side per round, by concurrency."""
STARTS = 3
CLIENT_NAME = "plaid-bridge bench"


def _environment(database_url: str, emulator_url: str, var_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": emulator_url,
        "PLAID_CLIENT_NAME": CLIENT_NAME,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(var_dir),
        "AUTH_JWT_SECRET": JWT_SECRET,
        "PLAID_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"b" * 32).decode(),
        "LOG_LEVEL": "INFO",
    }


_BARE_SERVICE = """
import sys
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(sys.argv[2])
app = FastAPI()


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _spawn(
    environment: dict[str, str], port: int, cwd: Path, *, bare: bool = False
) -> subprocess.Popen[bytes]:
    command = ["-m", "plaid_bridge.cli", "serve", "--port", str(port)]
    if bare:
        command = ["-c", _BARE_SERVICE, str(port), environment["DATABASE_URL"]]
    return subprocess.Popen(
        [sys.executable, *command],
        env=environment,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Polls `/readyz` until it answers 200 (RuntimeError after 60 s or if the process ends)."""
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=5.0) as client:
        while True:
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API did not become ready")
            time.sleep(0.005)


@contextmanager
def _service(
    environment: dict[str, str], cwd: Path, *, bare: bool = False
) -> Iterator[tuple[str, float]]:
    """`plaid-bridge serve` (or the bare floor) on a free port; yields its URL and the seconds
    it took to be ready."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = _spawn(environment, port, cwd, bare=bare)
    try:
        _until_ready(url, process)
        yield url, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def _token(user: str) -> str:
    now = int(time.time())
    claims = {"sub": user, "org_id": "bench-org", "role": "MEMBER", "iat": now, "exp": now + 3600}
    return str(jwt.encode(claims, JWT_SECRET, algorithm="HS256"))


def _direct_body(settings: Settings, user: str) -> dict[str, object]:
    """What the service's SDK call sends to `/link/token/create` for the same request."""
    return {
        "client_name": CLIENT_NAME,
        "language": settings.plaid_language,
        "country_codes": list(settings.plaid_country_codes),
        "user": {"client_user_id": user},
        "webhook": settings.webhook_url,
        "products": list(settings.plaid_products),
        "transactions": {"days_requested": settings.plaid_transactions_days_requested},
    }


Call = Callable[[httpx.AsyncClient], Awaitable[None]]


async def _timed(calls: list[Call], client: httpx.AsyncClient, concurrency: int) -> list[float]:
    """Runs `calls` with `concurrency` in flight; the seconds each took."""
    pending = iter(calls)
    timings: list[float] = []

    async def lane() -> None:
        for call in pending:
            started = time.perf_counter()
            await call(client)
            timings.append(time.perf_counter() - started)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return timings


async def _overheads(
    settings: Settings, service_url: str, emulator_url: str
) -> dict[int, tuple[float, float]]:
    """(service p50, direct p50) in seconds, by concurrency."""
    client_id, secret = settings.plaid_credentials
    plaid_headers = {
        "PLAID-CLIENT-ID": client_id,
        "PLAID-SECRET": secret.get_secret_value(),
        "Plaid-Version": "2020-09-14",
    }

    def service_call(user: str) -> Call:
        headers = {"Authorization": f"Bearer {_token(user)}"}

        async def call(client: httpx.AsyncClient) -> None:
            response = await client.post(
                f"{service_url}{API_PREFIX}/create-link-token", json={}, headers=headers
            )
            if response.status_code != 201:
                raise RuntimeError(f"create-link-token answered {response.status_code}")

        return call

    def direct_call(user: str) -> Call:
        body = _direct_body(settings, user)

        async def call(client: httpx.AsyncClient) -> None:
            response = await client.post(
                f"{emulator_url}/link/token/create", json=body, headers=plaid_headers
            )
            if response.status_code != 200:
                raise RuntimeError(f"/link/token/create answered {response.status_code}")

        return call

    def users(count: int) -> list[str]:
        # One user per call: create-link-token allows 10 a minute per user.
        return [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(count)]

    results: dict[int, tuple[float, float]] = {}
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for concurrency, per_round in PER_ROUND.items():
            # Warm-up: connections open, caches filled, on both sides.
            await _timed([service_call(u) for u in users(per_round // 2)], client, concurrency)
            await _timed([direct_call(u) for u in users(per_round // 2)], client, concurrency)
            timings: dict[str, list[float]] = {"service": [], "direct": []}
            for round_number in range(ROUNDS):
                sides = ["service", "direct"] if round_number % 2 == 0 else ["direct", "service"]
                for side in sides:
                    make = service_call if side == "service" else direct_call
                    calls = [make(u) for u in users(per_round)]
                    timings[side] += await _timed(calls, client, concurrency)
            results[concurrency] = (
                statistics.median(timings["service"]),
                statistics.median(timings["direct"]),
            )
    return results


def run() -> list[Figure]:
    with bench_database() as database:
        url = database.url
        with (
            emulator_process(seed=5, transactions=10) as emulator,
            TemporaryDirectory() as folder,
        ):
            environment = _environment(url, emulator.url, Path(folder) / "var")
            settings = Settings(
                _env_file=None,
                plaid_env="emulator",
                plaid_api_host=emulator.url,
                plaid_client_name=CLIENT_NAME,
            )
            starts: dict[bool, list[float]] = {False: [], True: []}
            for start in range(STARTS):
                for bare in (False, True) if start % 2 == 0 else (True, False):
                    with _service(environment, Path(folder), bare=bare) as (_, seconds):
                        starts[bare].append(seconds)
            with _service(environment, Path(folder)) as (service_url, _):
                measured = asyncio.run(_overheads(settings, service_url, emulator.url))
    figures = []
    for concurrency, target in ((1, 2), (10, 5)):
        service, direct = measured[concurrency]
        figures.append(
            Figure(
                f"link_token_overhead_c{concurrency}",
                (service - direct) * 1000,
                "ms",
                target=f"< {target} ms",
                note=(
                    f"p50 service {service * 1000:.1f} ms - direct emulator "
                    f"{direct * 1000:.1f} ms, {ROUNDS * PER_ROUND[concurrency]} calls each, "
                    f"{concurrency} in flight"
                ),
                better="lower",
            )
        )
    figures.append(
        Figure(
            "startup_ready",
            statistics.median(starts[False]),
            "s",
            statistics.median(starts[True]),
            target="< 1 s",
            note="spawn to first 200 from /readyz, PostgreSQL, median of "
            + ", ".join(f"{s:.2f}" for s in starts[False])
            + "; baseline a bare FastAPI app with SELECT 1",
            better="lower",
        )
    )
    return figures


if __name__ == "__main__":
    print(table(run()))
