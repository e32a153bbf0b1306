"""`plaid-bridge dev` as a user runs it, in a subprocess with its own var dir and free loopback
ports, waited for on /readyz with a bounded deadline and never left running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from plaid_bridge.config import Settings

READY_SECONDS = 90.0
STOP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class DevProcess:
    """One `plaid-bridge dev` run in `home` (its own var dir and SQLite file)."""

    home: Path
    api_port: int
    emulator_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        # None of the test run's own settings leak in: only the dev run's.
        settings = {name.upper() for name in Settings.model_fields}
        env = {key: value for key, value in os.environ.items() if key not in settings}
        env.update(
            {
                "PLAID_ENV": "emulator",
                "VAR_DIR": str(self.home / "var"),
                "DATABASE_URL": f"sqlite:///{self.home / 'var' / 'plaid_bridge.db'}",
                "EMULATOR_TRANSACTIONS": "120",
            }
        )
        return env

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "plaid_bridge.cli", *args],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        log = (self.home / "dev.log").open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plaid_bridge.cli",
                "dev",
                "--port",
                str(self.api_port),
                "--emulator-port",
                str(self.emulator_port),
                *extra,
            ],
            cwd=self.home,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes.append(process)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"dev exited with {process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.api}/readyz", timeout=2, trust_env=False).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        process.kill()
        pytest.fail(f"dev not ready within {READY_SECONDS} s:\n{self.log()}")

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Ctrl-C, as a user stops it."""
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(STOP_SECONDS) == 0, self.log()
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"dev did not stop within {STOP_SECONDS} s after SIGINT")

    def log(self) -> str:
        return (self.home / "dev.log").read_text(errors="replace")[-4000:]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def emulator(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevProcess]:
    running = DevProcess(tmp_path, free_port(), free_port())
    yield running
    for process in running.processes:  # a failed test leaves nothing running
        if process.poll() is None:
            process.kill()
            process.wait()
