"""The documented deployment as OS processes on loopback: nginx from `docs/deploy/nginx/`, with
`plaid-bridge serve` replicas and `plaid-bridge worker` processes behind it."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy"
COMMAND = Path(sys.executable).with_name("plaid-bridge")
STOP_SECONDS = 30.0


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on at the moment (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for held in sockets:
            held.bind(("127.0.0.1", 0))
        return [held.getsockname()[1] for held in sockets]
    finally:
        for held in sockets:
            held.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as nginx reads them: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class NginxPorts:
    tls: int  # the site's `listen 443 ssl`
    plain: int  # added beside it for the emulator's webhooks (it trusts no test certificate)
    redirect: int  # the site's `listen 80`


def derive_site(
    site: str, *, replicas: list[int], ports: NginxPorts, cert: Path, key: Path, logs: Path
) -> str:
    """The documented site with loopback ports, the test's certificate and log paths; each
    replaced line must be in the site exactly once, so the test follows the document."""
    upstream = "".join(f"    server 127.0.0.1:{port};\n" for port in replicas)
    replacements = [
        ("    server 127.0.0.1:8001;\n    server 127.0.0.1:8002;\n", upstream),
        ("    listen 80;\n", f"    listen 127.0.0.1:{ports.redirect};\n"),
        (
            "    listen 443 ssl http2;\n",
            f"    listen 127.0.0.1:{ports.tls} ssl http2;\n    listen 127.0.0.1:{ports.plain};\n",
        ),
        ("/etc/letsencrypt/live/bank.example.com/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/bank.example.com/privkey.pem", str(key)),
        ("/var/log/nginx/plaid-bridge.access.log", str(logs / "access.log")),
        ("/var/log/nginx/plaid-bridge.error.log", str(logs / "error.log")),
    ]
    for old, new in replacements:
        assert site.count(old) == 1, f"the documented site no longer has {old!r} once"
        site = site.replace(old, new)
    return site


def main_config(directory: Path, site: Path) -> str:
    """nginx.conf around the site: everything nginx writes stays under `directory`."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 2;\ndaemon off;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'main-error.log'} warn;\n"
        "events {\n    worker_connections 512;\n}\n"
        f"http {{\n{temp}    access_log off;\n    include {site};\n}}\n"
    )


@dataclass
class Running:
    """One started process; its stderr (the JSON log) goes to `log`."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
            try:
                return await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
            except TimeoutError:
                self.process.kill()
        return await self.process.wait()


@dataclass
class Processes:
    """Started processes, stopped (and killed if need be) in reverse order."""

    directory: Path
    started: list[Running] = field(default_factory=list)

    async def start(self, name: str, argv: list[str], env: dict[str, str]) -> Running:
        log = self.directory / f"{name}.log"
        with log.open("wb") as handle:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=self.directory,  # no .env of the repository
                stdin=asyncio.subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
            )
        running = Running(name, process, log)
        self.started.append(running)
        return running

    async def stop_all(self) -> None:
        for running in reversed(self.started):
            signum = signal.SIGQUIT if running.name == "nginx" else signal.SIGTERM
            await running.stop(signum)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if os.access(path, os.X_OK)), None
    )
