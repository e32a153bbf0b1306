"""Genuine webhook latency with and without a flood of forgeries naming made-up `kid`s.

The API runs in its own process (uvicorn, SQLite inbox, worker external); a stand-in for Plaid's
`/webhook_verification_key/get` serves one published key and refuses every other kid, counting
the calls. Genuine webhooks (each a new body, signed now with the published key, so the key is
cached after the first) are posted one after another and timed end to end: first alone, then
while a separate process posts forgeries as fast as `FORGERS` concurrent clients can. Figures:
genuine p50/p99 alone and during the flood, their ratio, the forgery rate, and the key fetches
the forgeries caused (bounded by PLAID_WEBHOOK_KEY_FETCH_PER_SECOND, default 1/s).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.scoreboard import Figure, table
from benchmarks.service_process import api_process
from benchmarks.webhook_signing import WEBHOOK_PATH, KeyEndpoint, body
from plaid_bridge.emulator.signer import KeyRing
from plaid_bridge.ops import migrate
from plaid_bridge.serving import BackgroundServer

GENUINE = 300
FORGERS = 16
PATH = WEBHOOK_PATH


def _forge_until(url: str, stop: Any, sent: Any) -> None:
    """In its own process: FORGERS clients posting forgeries, each under a new kid."""

    async def forger(client: httpx.AsyncClient) -> int:
        key, count = KeyRing(), 0
        while not stop.is_set():
            content = body(f"forged-{count}")
            key.rotate()  # a key Plaid never published, under a kid never seen
            header = key.sign(content)
            response = await client.post(
                PATH, content=content, headers={"Plaid-Verification": header}
            )
            if response.status_code != 401:
                raise RuntimeError(f"a forgery got {response.status_code}")
            count += 1
        return count

    async def main() -> int:
        limits = httpx.Limits(max_connections=FORGERS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            return sum(await asyncio.gather(*(forger(client) for _ in range(FORGERS))))

    sent.value = asyncio.run(main())


async def _genuine(url: str, key: KeyRing, label: str) -> list[float]:
    """Seconds per genuine webhook, posted one after another."""
    timings = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for n in range(GENUINE):
            content = body(f"{label}-{n}")
            header = key.sign(content)
            started = time.perf_counter()
            response = await client.post(
                PATH, content=content, headers={"Plaid-Verification": header}
            )
            timings.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"a genuine webhook got {response.status_code}")
    return timings


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def run() -> list[Figure]:
    key = KeyRing()
    stand_in = KeyEndpoint(key)
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory() as folder,
        BackgroundServer() as plaid,
    ):
        plaid.serve(stand_in.app)
        database_url = f"sqlite:///{Path(folder) / 'bench.db'}"
        migrate.upgrade(database_url)
        with api_process(plaid.url, database_url, Path(folder)) as api:
            url = api.url
            asyncio.run(_genuine(url, key, "warm-up"))  # key cached, connections warm
            quiet = asyncio.run(_genuine(url, key, "quiet"))
            stop, sent = context.Event(), context.Value("i", 0)
            flood = context.Process(target=_forge_until, args=(url, stop, sent))
            flood.start()
            try:
                asyncio.run(_genuine(url, key, "settle"))  # the flood at full speed first
                fetches_before = stand_in.unknown
                started = time.monotonic()
                loud = asyncio.run(_genuine(url, key, "flood"))
                elapsed = time.monotonic() - started
                fetches = stand_in.unknown - fetches_before
            finally:
                stop.set()
                flood.join(timeout=60)
    forged = sent.value
    return [
        Figure(
            "webhook_flood_p99",
            _p99(loud) * 1000,
            "ms",
            _p99(quiet) * 1000,
            note=f"{GENUINE} genuine webhooks beside {FORGERS} forging clients; baseline alone",
            better="lower",
        ),
        Figure(
            "webhook_flood_key_fetches",
            fetches,
            "fetches",
            note=(
                f"{forged} forgeries refused 401 in {elapsed:.1f} s;"
                f" bound {1 + int(elapsed)} at 1/s"
            ),
        ),
    ]


if __name__ == "__main__":
    print(table(run()))
