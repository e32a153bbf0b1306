"""The emulator in its own process, as Plaid is to the service: its CPU is not ours."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class Emulator:
    url: str
    pid: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def emulator_process(*, seed: int, transactions: int) -> Iterator[Emulator]:
    """Start `plaid-bridge emulator` on a free port, its state in memory only; yields its URL
    and pid; stops it after."""
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plaid_bridge.cli",
            "emulator",
            "--port",
            str(port),
            "--seed",
            str(seed),
            "--transactions",
            str(transactions),
            # Memory only: a state file would carry every run's Items into the next.
            "--state",
            "none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts it slowly
        while True:
            try:
                httpx.get(f"{url}/emulator/webhooks", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.05)
        yield Emulator(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
