"""Webhook ingest against a bare FastAPI endpoint, and the service under twice the load it sustains.

Both servers run as one process each under the same uvicorn settings: the API as `plaid-bridge
serve` (PostgreSQL inbox, worker external, verifying real ES256 headers against a stand-in for
Plaid's key endpoint), the baseline as `benchmarks/bare_app.py`. A load generator in its own
process (raw sockets, `benchmarks/loadgen.py`) keeps 50 connections busy, closed loop, in rounds
that alternate service and bare, the order reversed every round. Every webhook is a distinct
body signed before the timed loop (the replay guard would collapse identical ones).

Then an open loop at twice the service's measured rate: every answer must come within 2 s, as a
stored 200 or a 503 with Retry-After; afterwards each 200's webhook is looked up in the inbox.

Figures: `webhook_ingest` (req/s, baseline bare req/s), `webhook_ingest_p99` (ms),
`webhook_overload_max` (ms, the slowest answer of the open loop).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path

from sqlalchemy import create_engine, text

from benchmarks import loadgen
from benchmarks.bench_database import bench_database
from benchmarks.cpu import cpu_seconds
from benchmarks.emulator_process import _free_port
from benchmarks.scoreboard import Figure, table
from benchmarks.service_process import ApiProcess, api_process, wait_until_up
from benchmarks.webhook_signing import WEBHOOK_PATH, KeyEndpoint, body, raw_request
from plaid_bridge.db import sync_url
from plaid_bridge.emulator.signer import KeyRing
from plaid_bridge.serving import BackgroundServer

CONNECTIONS = 50
ROUNDS = 3
ROUND_SECONDS = 4.0
WARM_UP_SECONDS = 1.5
OVERLOAD_SECONDS = 5.0
OVERLOAD_TIMEOUT = 10.0
BARE_REQUESTS = 200_000  # one request repeated: the bare endpoint reads no body
HOST = "127.0.0.1"


class _Signer:
    def __init__(self, key: KeyRing) -> None:
        self.key = key

    def requests(self, label: str, count: int) -> list[bytes]:
        """`count` distinct signed webhooks, Items named `label-N`."""
        made = []
        for n in range(count):
            content = body(f"{label}-{n}")
            made.append(raw_request(WEBHOOK_PATH, content, self.key.sign(content)))
        return made


@contextmanager
def _bare_process() -> Iterator[ApiProcess]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bare_app", str(port)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_until_up(url, process, "/docs")
        yield ApiProcess(url, port, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=15)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _stored_labels(url: str, prefix: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT item_id FROM plaid_webhook_events WHERE item_id LIKE :prefix"),
                {"prefix": f"{prefix}-%"},
            )
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def run() -> list[Figure]:
    with bench_database() as database:
        return _measure(database.url)


def _measure(database_url: str) -> list[Figure]:
    key = KeyRing()
    signer = _Signer(key)
    stand_in = KeyEndpoint(key)
    bare_requests = [raw_request(WEBHOOK_PATH, body("bare"), "unused")] * BARE_REQUESTS
    with (
        tempfile.TemporaryDirectory() as folder,
        BackgroundServer() as plaid,
        ProcessPoolExecutor(1, mp_context=get_context("spawn")) as generator,
    ):
        plaid.serve(stand_in.app)
        with api_process(plaid.url, database_url, Path(folder)) as api, _bare_process() as bare:

            def closed(port: int, requests: list[bytes], seconds: float) -> loadgen.Outcome:
                return generator.submit(
                    loadgen.closed_loop, HOST, port, requests, CONNECTIONS, seconds
                ).result()

            warm = closed(api.port, signer.requests("warm", 4000), WARM_UP_SECONDS)
            closed(bare.port, bare_requests, WARM_UP_SECONDS)
            per_round = int(len(warm.indices) / warm.elapsed * ROUND_SECONDS * 2) + 1000
            service_rates: list[float] = []
            bare_rates: list[float] = []
            service_latencies: list[float] = []
            bare_latencies: list[float] = []
            statuses: Counter[int] = Counter()
            service_cpu = bare_cpu = 0.0
            service_count = bare_count = 0
            for round_number in range(ROUNDS):
                requests = signer.requests(f"r{round_number}", per_round)
                order = ["service", "bare"] if round_number % 2 == 0 else ["bare", "service"]
                for target in order:
                    if target == "service":
                        before = cpu_seconds(api.pid)
                        outcome = closed(api.port, requests, ROUND_SECONDS)
                        service_cpu += cpu_seconds(api.pid) - before
                        service_count += len(outcome.indices)
                        service_rates.append(len(outcome.indices) / outcome.elapsed)
                        service_latencies.extend(outcome.latencies)
                        statuses.update(outcome.statuses)
                    else:
                        before = cpu_seconds(bare.pid)
                        outcome = closed(bare.port, bare_requests, ROUND_SECONDS)
                        bare_cpu += cpu_seconds(bare.pid) - before
                        bare_count += len(outcome.indices)
                        bare_rates.append(len(outcome.indices) / outcome.elapsed)
                        bare_latencies.extend(outcome.latencies)
            sustained = statistics.median(service_rates)
            overload_rate = 2 * sustained
            overload_requests = signer.requests("ovl", int(overload_rate * OVERLOAD_SECONDS) + 1)
            load = os.getloadavg()[0]
            overload = generator.submit(
                loadgen.open_loop,
                HOST,
                api.port,
                overload_requests,
                overload_rate,
                OVERLOAD_SECONDS,
                OVERLOAD_TIMEOUT,
            ).result()
        stored = _stored_labels(database_url, "ovl")
    answered = Counter(overload.statuses)
    accepted = {
        f"ovl-{i}" for i, s in zip(overload.indices, overload.statuses, strict=True) if s == 200
    }
    lost = len(accepted - stored)
    service_rate = statistics.median(service_rates)
    bare_rate = statistics.median(bare_rates)
    service_us = service_cpu / max(1, service_count) * 1e6
    bare_us = bare_cpu / max(1, bare_count) * 1e6
    not_200 = sum(count for status, count in statuses.items() if status != 200)
    return [
        Figure(
            "webhook_ingest",
            service_rate,
            "req/s",
            bare_rate,
            target=">= 0.3x",
            note=(
                f"{CONNECTIONS} connections, closed loop, {ROUNDS} interleaved rounds of"
                f" {ROUND_SECONDS:.0f} s, PostgreSQL; CPU per request {service_us:.0f} us"
                f" (bare {bare_us:.0f} us); {not_200} not 200; load {load:.1f}"
            ),
        ),
        Figure(
            "webhook_ingest_p99",
            _p99(service_latencies) * 1000,
            "ms",
            target="< 50 ms",
            note=f"bare p99 {_p99(bare_latencies) * 1000:.1f} ms",
            better="lower",
        ),
        Figure(
            "webhook_overload_max",
            max(overload.latencies) * 1000,
            "ms",
            target="<= 2000 ms",
            note=(
                f"open loop {overload_rate:.0f}/s (2x) for {OVERLOAD_SECONDS:.0f} s:"
                f" {answered[200]} x 200, {answered[503]} x 503,"
                f" {sum(c for s, c in answered.items() if s not in (200, 503))} other;"
                f" p99 {_p99(overload.latencies) * 1000:.0f} ms;"
                f" every 200 in the inbox: {'yes' if lost == 0 else f'NO, {lost} missing'}"
            ),
            better="lower",
        ),
    ]


if __name__ == "__main__":
    started = time.monotonic()
    print(table(run()))
    print(f"{time.monotonic() - started:.0f} s")
