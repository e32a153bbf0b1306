"""The documented deployment behaves as one service: a real nginx built from
`docs/deploy/nginx/plaid-bridge.conf` in front of two `plaid-bridge serve` processes and two
`plaid-bridge worker` processes (WORKER_MODE=external) on PostgreSQL, with limits in Redis."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import ssl
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from plaid_bridge.activity.audit import AuditLog
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.security.auth import issue_dev_token
from plaid_bridge.security.crypto import KeyRing, TokenCipher
from plaid_bridge.sync.models import SyncRequest
from plaid_bridge.webhooks.models import WebhookEvent
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, REQUIRED, make_settings
from tests.deploy.stack import (
    COMMAND,
    DEPLOY,
    NginxPorts,
    Processes,
    Running,
    derive_site,
    free_ports,
    main_config,
    nginx_binary,
    self_signed,
)
from tests.sync.store import ledger, stored
from tests.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The browser's address: loopback, but not the proxy's, so the app must learn it from nginx.
CLIENT = "127.0.0.2"
SPOOFED = "203.0.113.66"
WAIT_SECONDS = 120.0
ITEMS = 6
BURST_CODES = (
    "DEFAULT_UPDATE",
    "INITIAL_UPDATE",
    "HISTORICAL_UPDATE",
    "NEW_ACCOUNTS_AVAILABLE",
    "WEBHOOK_UPDATE_ACKNOWLEDGED",
)
BASE = "/api/v1/plaid"


@dataclass
class Deployment:
    """The running deployment and what a test needs to reach and inspect it."""

    processes: Processes
    replicas: list[Running]
    replica_ports: list[int]
    workers: list[Running]
    nginx: Running
    ports: NginxPorts
    logs: Path
    cert: Path
    database: Database
    emulator: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports.tls}"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.plain}{BASE}/webhook"

    def client(self) -> httpx.AsyncClient:
        """A browser's connection to nginx over TLS, from the client address."""
        context = ssl.create_default_context(cafile=str(self.cert))
        transport = httpx.AsyncHTTPTransport(verify=context, local_address=CLIENT)
        return httpx.AsyncClient(base_url=self.url, transport=transport, timeout=30.0)

    def access_log(self) -> list[dict[str, str]]:
        """nginx's access log, in the documented format."""
        pattern = re.compile(
            r'^(?P<addr>\S+) \[(?P<time>[^]]+)\] "(?P<request>[^"]*)" (?P<status>\d+) \d+ '
            r"rid=(?P<rid>\S+) upstream=(?P<upstream>\S+) "
        )
        path = self.logs / "access.log"
        entries = []
        for line in path.read_text().splitlines():
            match = pattern.match(line)
            assert match, line
            entries.append(match.groupdict())
        return entries


def token(user: str, role: str = "MEMBER") -> str:
    return issue_dev_token(
        make_settings(auth_jwt_secret=JWT_SECRET), user=user, org="o1", role=role
    )


def require(condition: bool, reason: str) -> None:
    if not condition:
        if REQUIRED:
            pytest.fail(f"REQUIRE_TEST_SERVICES=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
async def deployment(
    database_url: str, emulator: EmulatorServer, tmp_path: Path
) -> AsyncIterator[Deployment]:
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("replicas and workers side by side need PostgreSQL; SQLite has one writer")
    nginx = nginx_binary()
    require(nginx is not None, "nginx is not installed (.ci/run installs Debian's nginx)")
    assert nginx is not None
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        require(False, f"Redis at {REDIS_URL} is unreachable: {type(error).__name__}")

    api_ports = free_ports(2)
    tls, plain, redirect = free_ports(3)
    ports = NginxPorts(tls=tls, plain=plain, redirect=redirect)
    logs = tmp_path / "nginx"
    logs.mkdir()
    cert, key = self_signed(tmp_path)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "PLAID_ENV": "emulator",
        "PLAID_API_HOST": emulator.url,
        "PLAID_WEBHOOK_URL": f"http://127.0.0.1:{plain}{BASE}/webhook",
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "WORKER_MODE": "external",
        "RATE_LIMIT_STORAGE_URI": REDIS_URL,
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "SYNC_RETRY_BACKOFF_SECONDS": "1",
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    processes = Processes(tmp_path)
    database = Database.from_url(database_url)
    try:
        replicas = [
            await processes.start(
                f"api-{port}",
                [str(COMMAND), "serve", "--host", "127.0.0.1", "--port", str(port)],
                env,
            )
            for port in api_ports
        ]
        workers = [
            await processes.start(f"worker-{n}", [str(COMMAND), "worker"], env) for n in (1, 2)
        ]
        site = tmp_path / "site.conf"
        site.write_text(
            derive_site(
                (DEPLOY / "nginx" / "plaid-bridge.conf").read_text(),
                replicas=api_ports,
                ports=ports,
                cert=cert,
                key=key,
                logs=logs,
            )
        )
        conf = tmp_path / "nginx.conf"
        conf.write_text(main_config(tmp_path, site))
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp_path / kind).mkdir()
        argv = [nginx, "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "early.log")]
        checked = await asyncio.create_subprocess_exec(
            *argv, "-t", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await checked.communicate()
        assert checked.returncode == 0, output.decode()
        proxy = await processes.start("nginx", argv, env)

        async with httpx.AsyncClient(timeout=5.0) as probe:

            async def ready() -> bool:
                for port in api_ports:
                    try:
                        answer = await probe.get(f"http://127.0.0.1:{port}/readyz")
                    except httpx.TransportError:
                        return False
                    if answer.status_code != 200:
                        return False
                try:
                    await probe.get(f"http://127.0.0.1:{plain}/")
                except httpx.TransportError:
                    return False
                return True

            await eventually(ready, "the replicas and nginx to answer", within=WAIT_SECONDS)
        yield Deployment(
            processes=processes,
            replicas=replicas,
            replica_ports=api_ports,
            workers=workers,
            nginx=proxy,
            ports=ports,
            logs=logs,
            cert=cert,
            database=database,
            emulator=emulator.url,
        )
    finally:
        await processes.stop_all()
        await database.dispose()


async def plaid_call(emulator: str, path: str, **fields: Any) -> dict[str, Any]:
    """A call to the emulator's Plaid API, as the SDK would send it."""
    body = {"client_id": "emulator-client-id", "secret": "emulator-secret", **fields}
    async with httpx.AsyncClient(base_url=emulator, timeout=30.0) as client:
        answer = await client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def settled(deployment: Deployment) -> bool:
    """Every webhook sent so far applied, every sync done."""
    async with httpx.AsyncClient(base_url=deployment.emulator, timeout=60.0) as control:
        await control.get("/emulator/webhooks", params={"wait": "true"})
    async with deployment.database.transaction() as session:
        open_rows = await session.scalar(
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.status != "DONE")
        )
        requests = await session.scalar(select(func.count()).select_from(SyncRequest))
        unsynced = await session.scalar(
            select(func.count())
            .select_from(PlaidConnection)
            .where(PlaidConnection.last_synced_at.is_(None))
        )
    return open_rows == 0 and requests == 0 and unsynced == 0


async def webhook_records(emulator: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=emulator, timeout=60.0) as control:
        answer = await control.get("/emulator/webhooks", params={"wait": "true"})
    records: list[dict[str, Any]] = answer.json()["webhooks"]
    return records


async def test_two_replicas_and_two_workers_behind_nginx_behave_as_one_service(
    deployment: Deployment,
) -> None:
    async with deployment.client() as browser:
        # TLS ends at nginx; plain HTTP is sent there; only the API is public.
        async with httpx.AsyncClient() as plain:
            moved = await plain.get(f"http://127.0.0.1:{deployment.ports.redirect}{BASE}/x")
        assert moved.status_code == 301
        assert moved.headers["location"].startswith("https://")
        assert (await browser.get("/metrics")).status_code == 404
        assert (await browser.get("/readyz")).status_code == 404

        # Link Items through the proxy, each request with its own id and a forged address.
        item_ids = []
        for n in range(ITEMS):
            public = await plaid_call(
                deployment.emulator,
                "/sandbox/public_token/create",
                institution_id="ins_109508",
                initial_products=["transactions"],
                options={"webhook": deployment.webhook_url},
            )
            exchanged = await browser.post(
                f"{BASE}/exchange-token",
                json={"publicToken": public["public_token"], "allowDuplicate": True},
                headers={
                    "Authorization": f"Bearer {token(f'u-link-{n}')}",
                    "X-Request-ID": f"link-{n}",
                    "X-Forwarded-For": SPOOFED,
                },
            )
            assert exchanged.status_code == 201, exchanged.text
            assert exchanged.headers["x-request-id"] == f"link-{n}"
            item_ids.append(exchanged.json()["itemId"])
        await eventually(lambda: settled(deployment), "the initial syncs", within=WAIT_SECONDS)

        # The request id and the client's real address reach the audit rows and the logs.
        async with deployment.database.transaction() as session:
            audited = {
                row.request_id: row
                for row in await session.scalars(
                    select(AuditLog).where(AuditLog.action == "TOKEN_EXCHANGED")
                )
            }
        assert {rid: (row.ip, row.outcome) for rid, row in audited.items()} == {
            f"link-{n}": (CLIENT, "SUCCESS") for n in range(ITEMS)
        }
        app_lines = [line for replica in deployment.replicas for line in replica.lines()]
        stored_lines = {
            line["request_id"]: line["client_ip"]
            for line in app_lines
            if line.get("event") == "plaid.exchange.stored"
        }
        assert stored_lines == {f"link-{n}": CLIENT for n in range(ITEMS)}
        unnamed = await browser.get(
            f"{BASE}/connections", headers={"Authorization": f"Bearer {token('u-link-0')}"}
        )
        assert unnamed.status_code == 200
        generated = unnamed.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        entries = deployment.access_log()
        by_rid = {entry["rid"]: entry for entry in entries}
        assert by_rid[generated]["addr"] == CLIENT
        assert {by_rid[f"link-{n}"]["addr"] for n in range(ITEMS)} == {CLIENT}
        upstreams = {f"127.0.0.1:{port}" for port in deployment.replica_ports}
        assert {entry["upstream"] for entry in entries if entry["rid"].startswith("link-")} == (
            upstreams
        )

        # One user's limit (10 link tokens a minute) holds across both replicas.
        limited_user = f"u-limit-{uuid.uuid4().hex[:8]}"
        answers = await asyncio.gather(
            *(
                browser.post(
                    f"{BASE}/create-link-token",
                    json={},
                    headers={
                        "Authorization": f"Bearer {token(limited_user)}",
                        "X-Request-ID": f"limit-{n}",
                    },
                )
                for n in range(14)
            )
        )
        assert Counter(answer.status_code for answer in answers) == {201: 10, 429: 4}
        limit_upstreams = {
            entry["upstream"]
            for entry in deployment.access_log()
            if entry["rid"].startswith("limit-")
        }
        assert limit_upstreams == upstreams

        # A body over the limit is refused at nginx, in the app's envelope; nothing is stored.
        too_large = await browser.post(
            f"{BASE}/webhook",
            content=b'{"webhook_type": "' + b"x" * 70_000 + b'"}',
            headers={"Content-Type": "application/json", "X-Request-ID": "too-large"},
        )
        assert too_large.status_code == 413
        assert too_large.json() == {
            "error": {
                "code": "PAYLOAD_TOO_LARGE",
                "message": "The request body is too large.",
                "needsReauth": False,
                "retryAfter": None,
            },
            "requestId": "too-large",
        }

    # A burst of signed webhooks through nginx; one replica is killed in the middle of it.
    cipher = TokenCipher(KeyRing.parse(ENCRYPTION_KEYS))
    async with deployment.database.transaction() as session:
        connections = list(await session.scalars(select(PlaidConnection)))
    tokens = {
        row.item_id: cipher.decrypt(row.access_token_encrypted or "", row.item_id)
        for row in connections
    }
    before = len(await webhook_records(deployment.emulator))
    async with deployment.database.transaction() as session:
        rows_before = int(await session.scalar(select(func.count(WebhookEvent.id))) or 0)
        last_before = int(await session.scalar(select(func.max(WebhookEvent.id))) or 0)
    log_before = len(deployment.access_log())
    fired = [(item_id, code) for code in BURST_CODES for item_id in item_ids]
    doomed = deployment.replicas[0]
    killed = asyncio.Event()
    gate = asyncio.Semaphore(4)

    async def fire(item_id: str, code: str) -> None:
        async with gate:
            await plaid_call(
                deployment.emulator,
                "/sandbox/item/fire_webhook",
                access_token=tokens[item_id],
                webhook_code=code,
            )

    async def kill_mid_burst() -> None:
        async def a_third_arrived() -> bool:
            async with deployment.database.transaction() as session:
                count = int(await session.scalar(select(func.count(WebhookEvent.id))) or 0)
            return count >= rows_before + len(fired) // 3

        await eventually(a_third_arrived, "a third of the burst to arrive", within=WAIT_SECONDS)
        doomed.process.send_signal(signal.SIGKILL)
        await doomed.process.wait()
        killed.set()

    async def advance_after_the_kill() -> None:
        await killed.wait()
        async with httpx.AsyncClient(base_url=deployment.emulator, timeout=60.0) as control:
            moved_on = await control.post("/emulator/advance", json={"days": 2})
        assert moved_on.status_code == 200, moved_on.text

    await asyncio.gather(
        kill_mid_burst(),
        advance_after_the_kill(),
        *(fire(item_id, code) for item_id, code in fired),
    )
    assert killed.is_set()
    await eventually(lambda: settled(deployment), "the burst to be applied", within=WAIT_SECONDS)

    burst = (await webhook_records(deployment.emulator))[before:]
    assert {record["url"] for record in burst} == {deployment.webhook_url}
    assert len(burst) >= len(fired) + ITEMS
    answered = Counter(record["body"] for record in burst if record["statusCode"] == 200)
    unanswered = Counter(record["body"] for record in burst if record["statusCode"] != 200)
    assert sum(answered.values()) >= len(fired)  # most got through, the survivor took over
    hooks = [e for e in deployment.access_log()[log_before:] if f"{BASE}/webhook" in e["request"]]
    doomed_port, survivor_port = deployment.replica_ports
    assert any(f":{doomed_port}" in e["upstream"] and e["status"] == "200" for e in hooks)
    assert any(f":{survivor_port}" in e["upstream"] and e["status"] == "200" for e in hooks)
    async with deployment.database.transaction() as session:
        inbox = list(
            await session.scalars(
                select(WebhookEvent).where(WebhookEvent.id > last_before).order_by(WebhookEvent.id)
            )
        )
    rows = Counter(row.body for row in inbox)
    for body, count in answered.items():
        # Answered 200: stored (bytes unchanged, so verification passed) exactly once per
        # delivery; a delivery cut off by the kill may or may not have been stored before it.
        assert count <= rows[body] <= count + unanswered[body], body
    assert {row.status for row in inbox} == {"DONE"}
    assert {row.attempts for row in inbox} == {1}  # each applied by one worker, once
    assert all(hashlib.sha256(row.body.encode()).hexdigest() == row.body_sha256 for row in inbox)

    # The stores equal the emulator's ledgers after the advance and the burst's syncs.
    async with httpx.AsyncClient(base_url=deployment.emulator, timeout=30.0) as control:
        for item_id in item_ids:
            assert await stored(deployment.database, item_id) == await ledger(control, item_id)
    for worker in deployment.workers:
        assert await worker.stop(signal.SIGTERM) == 0
