"""The API as the benchmarks run it: `plaid-bridge serve` in its own process, its CPU not ours."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.emulator_process import _free_port

JWT_SECRET = "benchmark-secret-0123456789abcdef0123"
ENCRYPTION_KEYS = "k1:" + base64.b64encode(b"b" * 32).decode()


@dataclass(frozen=True, slots=True)
class ApiProcess:
    url: str
    port: int
    pid: int


def wait_until_up(url: str, process: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}{path}", timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{url} did not start") from None
            time.sleep(0.05)


@contextmanager
def api_process(
    plaid_url: str,
    database_url: str,
    folder: Path,
    *,
    jwt_secret: str = JWT_SECRET,
    encryption_keys: str = ENCRYPTION_KEYS,
) -> Iterator[ApiProcess]:
    """`plaid-bridge serve` (one process, worker external) on a free port, calling Plaid at
    `plaid_url`; stopped on the way out."""
    port = _free_port()
    env = {
        **os.environ,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": plaid_url,
        "PLAID_MAX_RETRIES": "0",
        "DATABASE_URL": database_url,
        "WORKER_MODE": "external",
        "VAR_DIR": str(folder / "var"),
        "AUTH_JWT_SECRET": jwt_secret,
        "PLAID_ENCRYPTION_KEYS": encryption_keys,
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
        wait_until_up(url, process)
        yield ApiProcess(url, port, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=15)
