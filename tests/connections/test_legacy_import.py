"""`plaid-bridge import-legacy`: an old module's table on PostgreSQL (SQLite when PostgreSQL is not
configured), tokens encrypted by the documented old recipe, Items created at the emulator."""

from __future__ import annotations

import base64
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from sqlalchemy import Engine, create_engine, select, text

from plaid_bridge.activity.audit import AuditLog
from plaid_bridge.activity.events import Event
from plaid_bridge.config import Settings
from plaid_bridge.connections.legacy_import import ImportReport, Outcome, import_legacy
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.services import Services, build_services
from plaid_bridge.sync.models import SyncRequest
from tests.conftest import (
    ENCRYPTION_KEYS,
    JWT_SECRET,
    UNREACHABLE_WEBHOOK,
    PostgresDatabases,
    make_settings,
)
from tests.sync.store import drain, ledger, stored

pytestmark = pytest.mark.anyio

LEGACY_KEY = "the old module's passphrase, as its PLAID_ENCRYPTION_KEY held it"
# The old module's webhook: a URL that answered 404 (here: nothing listens on the discard port).
OLD_WEBHOOK = "http://127.0.0.1:9/plaid/webhooks"
LAST_SYNC = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def legacy_encrypt(token: str, passphrase: str) -> str:
    """The old module's recipe, from its description: key = PBKDF2-HMAC-SHA512(passphrase,
    64-byte random salt, 100,000 rounds, 32 bytes); AES-256-GCM with a 16-byte random IV and no
    associated data; stored as base64(salt | iv | tag | ciphertext)."""
    salt, iv = os.urandom(64), os.urandom(16)
    key = PBKDF2HMAC(algorithm=hashes.SHA512(), length=32, salt=salt, iterations=100_000).derive(
        passphrase.encode("utf-8")
    )
    sealed = AESGCM(key).encrypt(iv, token.encode("utf-8"), None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return base64.b64encode(salt + iv + tag + ciphertext).decode("ascii")


def _ddl(dialect: str) -> str:
    """The old table as TypeORM created it: camelCase columns, quoted."""
    ids = "uuid" if dialect == "postgresql" else "varchar(36)"
    stamp = "timestamp with time zone" if dialect == "postgresql" else "timestamp"
    return f"""
        CREATE TABLE plaid_connections (
            "id" {ids} PRIMARY KEY,
            "userId" varchar NOT NULL,
            "orgId" varchar,
            "itemId" varchar NOT NULL UNIQUE,
            "accessToken" text NOT NULL,
            "institutionId" varchar,
            "institutionName" varchar,
            "status" varchar NOT NULL DEFAULT 'PENDING',
            "lastSyncedAt" {stamp},
            "createdAt" {stamp} NOT NULL DEFAULT CURRENT_TIMESTAMP
        )
    """


@dataclass
class LegacyDatabase:
    """The old module's database: its `plaid_connections` table and a way to add rows."""

    url: str
    engine: Engine
    rows: int = 0

    def add(
        self,
        *,
        item_id: str,
        token: str,
        status: str,
        org: str | None = "o1",
        user: str = "u1",
        encrypt_with: str = LEGACY_KEY,
    ) -> str:
        self.rows += 1
        legacy_id = str(uuid.UUID(int=self.rows))
        with self.engine.begin() as connection:
            connection.execute(
                text(
                    'INSERT INTO plaid_connections ("id", "userId", "orgId", "itemId", '
                    '"accessToken", "institutionId", "institutionName", "status", '
                    '"lastSyncedAt") VALUES (:id, :user, :org, :item, :token, :ins, :name, '
                    ":status, :last)"
                ),
                {
                    "id": legacy_id,
                    "user": user,
                    "org": org,
                    "item": item_id,
                    "token": legacy_encrypt(token, encrypt_with),
                    "ins": "ins_109508",
                    "name": "First Platypus Bank",
                    "status": status,
                    "last": LAST_SYNC,
                },
            )
        return legacy_id


@pytest.fixture
def legacy_database(
    postgres_databases: PostgresDatabases | None, tmp_path: Path
) -> Iterator[LegacyDatabase]:
    """A database of its own for the old table: PostgreSQL when configured, else SQLite."""
    if postgres_databases is None:
        url = f"sqlite:///{tmp_path / 'legacy.db'}"
        engine = create_engine(url)
        dropped: str | None = None
    else:
        dropped = f"pb_legacy_{uuid.uuid4().hex[:12]}"
        with postgres_databases.admin.connect() as admin:
            admin.execute(text(f'CREATE DATABASE "{dropped}"'))
        url = postgres_databases.url_for(dropped)
        engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(_ddl(engine.dialect.name)))
    yield LegacyDatabase(url, engine)
    engine.dispose()
    if dropped is not None and postgres_databases is not None:
        with postgres_databases.admin.connect() as admin:
            admin.execute(text(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)'))


@pytest.fixture
def settings(database_url: str, emulator: EmulatorServer, tmp_path: Path) -> Settings:
    """The test settings with the old module's key configured."""
    return make_settings(
        database_url=database_url,
        plaid_api_host=emulator.url,
        var_dir=tmp_path / "var",
        plaid_legacy_encryption_key=LEGACY_KEY,
        sync_retry_backoff_seconds=0,
    )


async def new_item(services: Services) -> tuple[str, str]:
    """An Item at the emulator as the old module linked it: (item id, access token)."""
    public = await services.plaid.sandbox_public_token_create(
        institution_id="ins_109508", webhook=OLD_WEBHOOK
    )
    exchanged = await services.plaid.exchange_public_token(public_token=public.public_token)
    return exchanged.item_id, exchanged.access_token


async def snapshot(database: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row this service keeps about connections, to compare runs."""
    tables = {
        "connections": select(PlaidConnection).order_by(PlaidConnection.item_id),
        "audit": select(AuditLog).order_by(AuditLog.id),
        "events": select(Event).order_by(Event.id),
        "sync_requests": select(SyncRequest).order_by(SyncRequest.item_id),
    }
    result: dict[str, list[dict[str, Any]]] = {}
    async with database.transaction() as session:
        for name, statement in tables.items():
            rows = (await session.scalars(statement)).all()
            result[name] = [
                {column.key: getattr(row, column.key) for column in row.__table__.columns}
                for row in rows
            ]
    return result


async def webhook_updates(control: httpx.AsyncClient, item_ids: list[str]) -> int:
    response = await control.get("/emulator/calls", params={"endpoint": "/item/webhook/update"})
    return sum(1 for call in response.json()["calls"] if call["itemId"] in item_ids)


def outcomes(report: ImportReport) -> dict[str | None, tuple[Outcome, str]]:
    return {result.item_id: (result.outcome, result.detail) for result in report.results}


async def test_import_maps_statuses_reencrypts_and_a_second_run_changes_nothing(
    services: Services,
    legacy_database: LegacyDatabase,
    emulator_control: httpx.AsyncClient,
) -> None:
    active, error, inactive, pending = [await new_item(services) for _ in range(4)]
    await services.plaid.sandbox_reset_login(access_token=error[1])
    for (item_id, token), status in zip(
        (active, error, inactive, pending), ("ACTIVE", "ERROR", "INACTIVE", "PENDING"), strict=True
    ):
        legacy_database.add(item_id=item_id, token=token, status=status)
    item_ids = [active[0], error[0], inactive[0], pending[0]]

    first = await import_legacy(services, source_url=legacy_database.url)

    assert {item: outcome for item, (outcome, _) in outcomes(first).items()} == dict.fromkeys(
        item_ids, Outcome.IMPORTED
    )
    assert first.lines()[-1] == "imported 4, skipped 0, failed 0"
    async with services.database.transaction() as session:
        rows = {row.item_id: row for row in (await session.scalars(select(PlaidConnection))).all()}
        requests = {row.item_id: row for row in (await session.scalars(select(SyncRequest)))}
        audited = (
            await session.scalars(select(AuditLog).where(AuditLog.action == "CONNECTION_IMPORTED"))
        ).all()
    assert {item: rows[item].status for item in item_ids} == {
        active[0]: "ACTIVE",
        error[0]: "LOGIN_REQUIRED",
        inactive[0]: "REVOKED",
        pending[0]: "ACTIVE",
    }
    assert rows[error[0]].error_code == "ITEM_LOGIN_REQUIRED"
    tokens = {active[0]: active[1], error[0]: error[1], inactive[0]: inactive[1]}
    tokens[pending[0]] = pending[1]
    for item_id, token in tokens.items():
        row = rows[item_id]
        assert row.org_id == "o1"
        assert row.user_id == "u1"
        assert row.institution_name == "First Platypus Bank"
        assert row.last_synced_at == LAST_SYNC
        assert row.cursor is None
        stored_token = row.access_token_encrypted
        assert stored_token is not None
        assert stored_token.startswith("v1.k1.")
        assert services.cipher.decrypt(stored_token, item_id) == token
    # The Items Plaid still serves now send their webhooks here; the revoked one is left alone.
    for item_id, token in tokens.items():
        item = await services.plaid.get_item(access_token=token)
        expected = OLD_WEBHOOK if item_id == inactive[0] else UNREACHABLE_WEBHOOK
        assert item.webhook == expected, item_id
    # A full sync from an empty cursor, for the connections that can sync.
    assert {item: (r.state, r.reason) for item, r in requests.items()} == {
        active[0]: ("QUEUED", "import"),
        pending[0]: ("QUEUED", "import"),
    }
    assert sorted(entry.item_id or "" for entry in audited) == sorted(item_ids)

    before = await snapshot(services.database)
    updates = await webhook_updates(emulator_control, item_ids)
    assert updates == 3

    second = await import_legacy(services, source_url=legacy_database.url)

    assert {item: outcome for item, (outcome, _) in outcomes(second).items()} == dict.fromkeys(
        item_ids, Outcome.SKIPPED
    )
    assert {detail for _, detail in outcomes(second).values()} == {
        "already imported (the Item is here)"
    }
    assert second.lines()[-1] == "imported 0, skipped 4, failed 0"
    assert await snapshot(services.database) == before
    assert await webhook_updates(emulator_control, item_ids) == updates

    # The queued sync runs on the re-encrypted token and fills the store from scratch.
    await drain(services)
    for item_id in (active[0], pending[0]):
        assert await stored(services.database, item_id) == await ledger(emulator_control, item_id)


async def test_a_wrong_key_fails_every_row_and_imports_nothing(
    settings: Settings,
    legacy_database: LegacyDatabase,
    emulator_control: httpx.AsyncClient,
    services: Services,
) -> None:
    items = [await new_item(services) for _ in range(3)]
    for (item_id, token), status in zip(items, ("ACTIVE", "PENDING", "ERROR"), strict=True):
        legacy_database.add(item_id=item_id, token=token, status=status)
    wrong = build_services(
        make_settings(
            database_url=settings.database_url,
            plaid_api_host=settings.plaid_api_host,
            var_dir=settings.var_dir,
            plaid_legacy_encryption_key="not-the-old-passphrase",
        )
    )
    try:
        report = await import_legacy(wrong, source_url=legacy_database.url)
    finally:
        await wrong.aclose()

    assert {result.outcome for result in report.results} == {Outcome.FAILED}
    assert {result.detail for result in report.results} == {
        "the access token does not decrypt: legacy token failed authentication: wrong legacy "
        "key or tampered"
    }
    assert report.lines()[-1] == "imported 0, skipped 0, failed 3"
    assert await snapshot(services.database) == {
        "connections": [],
        "audit": [],
        "events": [],
        "sync_requests": [],
    }
    assert await webhook_updates(emulator_control, [item_id for item_id, _ in items]) == 0


async def test_a_dry_run_reports_and_writes_nothing(
    services: Services, legacy_database: LegacyDatabase, emulator_control: httpx.AsyncClient
) -> None:
    (active_id, active_token), (gone_id, gone_token) = [await new_item(services) for _ in range(2)]
    await services.plaid.remove_item(access_token=gone_token)
    legacy_database.add(item_id=active_id, token=active_token, status="ACTIVE")
    legacy_database.add(item_id=gone_id, token=gone_token, status="PENDING")

    report = await import_legacy(services, source_url=legacy_database.url, dry_run=True)

    assert outcomes(report) == {
        active_id: (Outcome.IMPORTED, "would import: org o1  ACTIVE -> ACTIVE, full sync queued"),
        gone_id: (Outcome.FAILED, "the Item no longer exists at Plaid (ITEM_NOT_FOUND)"),
    }
    assert report.lines()[-1] == (
        "imported 1, skipped 0, failed 1 (dry run: nothing was written, no Item was changed)"
    )
    assert (await snapshot(services.database))["connections"] == []
    assert await webhook_updates(emulator_control, [active_id]) == 0
    item = await services.plaid.get_item(access_token=active_token)
    assert item.webhook == OLD_WEBHOOK


async def test_rows_without_an_organisation_need_a_default(
    services: Services, legacy_database: LegacyDatabase
) -> None:
    (orphan_id, orphan_token), (owned_id, owned_token) = [
        await new_item(services) for _ in range(2)
    ]
    legacy_database.add(item_id=orphan_id, token=orphan_token, status="ACTIVE", org=None)
    legacy_database.add(item_id=owned_id, token=owned_token, status="ACTIVE", org="o2")

    without = await import_legacy(services, source_url=legacy_database.url)
    assert outcomes(without)[orphan_id] == (
        Outcome.SKIPPED,
        "the row has no organisation; pass --default-org ORG",
    )
    assert outcomes(without)[owned_id][0] is Outcome.IMPORTED

    with_default = await import_legacy(
        services, source_url=legacy_database.url, default_org="o-default"
    )
    assert outcomes(with_default)[orphan_id][0] is Outcome.IMPORTED
    assert outcomes(with_default)[owned_id][0] is Outcome.SKIPPED
    async with services.database.transaction() as session:
        orgs = dict(
            (await session.execute(select(PlaidConnection.item_id, PlaidConnection.org_id))).all()
        )
    assert orgs == {orphan_id: "o-default", owned_id: "o2"}


COMMAND = Path(sys.executable).with_name("plaid-bridge")


async def run_command(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """`plaid-bridge` as an operator runs it: (exit code, stdout, stderr)."""
    with anyio.fail_after(120):
        done = await anyio.run_process([str(COMMAND), *args], env=env, cwd=cwd, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def command_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "PLAID_ENV": "emulator",
        "PLAID_WEBHOOK_URL": UNREACHABLE_WEBHOOK,
        "PLAID_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "PLAID_LEGACY_ENCRYPTION_KEY": LEGACY_KEY,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "VAR_DIR": str(tmp_path / "var"),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


async def test_the_command_prints_the_report_and_exits_1_on_failures(
    database_url: str,
    emulator: EmulatorServer,
    legacy_database: LegacyDatabase,
    services: Services,
    tmp_path: Path,
) -> None:
    item_id, token = await new_item(services)
    good = legacy_database.add(item_id=item_id, token=token, status="ACTIVE")
    bad = legacy_database.add(item_id="item-unknown", token="x", status="BROKEN")
    env = command_env(database_url, tmp_path, PLAID_API_HOST=emulator.url)
    argv = ("import-legacy", "--database-url", legacy_database.url)

    code, out, err = await run_command(*argv, env=env, cwd=tmp_path)

    assert code == 1, err
    assert out.splitlines() == [
        f"imported {good}  item {item_id}  org o1  ACTIVE -> ACTIVE, full sync queued",
        f"failed   {bad}  item item-unknown  unknown old status 'BROKEN'",
        "imported 1, skipped 0, failed 1",
    ]
    assert token not in out + err

    again = await run_command(*argv, "--dry-run", env=env, cwd=tmp_path)
    assert again[0] == 1
    assert again[1].splitlines()[0] == (
        f"skipped  {good}  item {item_id}  already imported (the Item is here)"
    )

    del env["PLAID_LEGACY_ENCRYPTION_KEY"]
    code, out, err = await run_command(*argv, env=env, cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err.strip().splitlines()[-1] == (
        "plaid-bridge import-legacy: PLAID_LEGACY_ENCRYPTION_KEY is not set: old tokens cannot "
        "be read"
    )


async def test_the_command_names_an_unreadable_old_table(database_url: str, tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'nothing-here.db'}"

    code, out, err = await run_command(
        "import-legacy",
        "--database-url",
        empty,
        env=command_env(database_url, tmp_path),
        cwd=tmp_path,
    )

    assert (code, out) == (2, "")
    assert err.strip().splitlines()[-1] == (
        "plaid-bridge import-legacy: cannot read the old plaid_connections table: "
        "no such table: plaid_connections"
    )
