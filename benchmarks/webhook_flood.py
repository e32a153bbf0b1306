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
import base64
import hashlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jws
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.emulator_process import _free_port
from benchmarks.scoreboard import Figure, table
from plaid_bridge.ops import migrate
from plaid_bridge.serving import BackgroundServer

GENUINE = 300
FORGERS = 16
PATH = "/api/v1/plaid/webhook"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class _Key:
    def __init__(self) -> None:
        self.kid = str(uuid.uuid4())
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def jwk(self) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {
            "alg": "ES256",
            "crv": "P-256",
            "kid": self.kid,
            "kty": "EC",
            "use": "sig",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
            "created_at": int(time.time()) - 60,
            "expired_at": None,
        }

    def sign(self, body: bytes) -> str:
        claims = {"iat": int(time.time()), "request_body_sha256": hashlib.sha256(body).hexdigest()}
        return jws.sign(claims, self.pem, headers={"kid": self.kid}, algorithm="ES256")


def _body(label: str) -> bytes:
    payload = {
        "webhook_type": "TRANSACTIONS",
        "webhook_code": "SYNC_UPDATES_AVAILABLE",
        "item_id": label,
        "initial_update_complete": True,
        "historical_update_complete": False,
        "environment": "production",
    }
    return json.dumps(payload, indent=2).encode()


class _KeyEndpoint:
    """Plaid's key endpoint for one published key; counts calls for other kids."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.unknown = 0
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[Route("/webhook_verification_key/get", self._get, methods=["POST"])]
        )

    async def _get(self, request: Request) -> JSONResponse:
        kid = (await request.json()).get("key_id")
        if kid == self.key.kid:
            return JSONResponse({"key": self.key.jwk(), "request_id": uuid.uuid4().hex})
        with self._lock:
            self.unknown += 1
        error = {
            "error_type": "INVALID_INPUT",
            "error_code": "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
            "error_message": "invalid key id",
            "display_message": None,
            "request_id": uuid.uuid4().hex,
        }
        return JSONResponse(error, status_code=400)


@contextmanager
def _api(plaid_url: str, folder: Path) -> Iterator[str]:
    database_url = f"sqlite:///{folder / 'bench.db'}"
    migrate.upgrade(database_url)
    port = _free_port()
    env = {
        **os.environ,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": plaid_url,
        "PLAID_MAX_RETRIES": "0",
        "DATABASE_URL": database_url,
        "WORKER_MODE": "external",
        "VAR_DIR": str(folder / "var"),
        "AUTH_JWT_SECRET": "benchmark-secret-0123456789abcdef0123",
        "PLAID_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"b" * 32).decode(),
        "LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "plaid_bridge.cli", "serve", "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the API did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _forge_until(url: str, stop: Any, sent: Any) -> None:
    """In its own process: FORGERS clients posting forgeries, each under a new kid."""

    async def forger(client: httpx.AsyncClient) -> int:
        key, count = _Key(), 0
        while not stop.is_set():
            body = _body(f"forged-{count}")
            header = jws.sign(
                {"iat": int(time.time()), "request_body_sha256": hashlib.sha256(body).hexdigest()},
                key.pem,
                headers={"kid": str(uuid.uuid4())},
                algorithm="ES256",
            )
            response = await client.post(PATH, content=body, headers={"Plaid-Verification": header})
            if response.status_code != 401:
                raise RuntimeError(f"a forgery got {response.status_code}")
            count += 1
        return count

    async def main() -> int:
        limits = httpx.Limits(max_connections=FORGERS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            return sum(await asyncio.gather(*(forger(client) for _ in range(FORGERS))))

    sent.value = asyncio.run(main())


async def _genuine(url: str, key: _Key, label: str) -> list[float]:
    """Seconds per genuine webhook, posted one after another."""
    timings = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for n in range(GENUINE):
            body = _body(f"{label}-{n}")
            header = key.sign(body)
            started = time.perf_counter()
            response = await client.post(PATH, content=body, headers={"Plaid-Verification": header})
            timings.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"a genuine webhook got {response.status_code}")
    return timings


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def run() -> list[Figure]:
    key = _Key()
    stand_in = _KeyEndpoint(key)
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory() as folder,
        BackgroundServer() as plaid,
    ):
        plaid.serve(stand_in.app)
        with _api(plaid.url, Path(folder)) as url:
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
