"""Shared fixtures: databases built by the real migrations, one fresh database per test.

SQLite always runs. PostgreSQL runs when `TEST_DATABASE_URL` is set (CI sets it and also sets
`REQUIRE_TEST_SERVICES=1`, which turns an unreachable server into a failure instead of a skip).
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from plaid_bridge.app import create_app
from plaid_bridge.config import Settings
from plaid_bridge.db import Database, sync_url
from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
from plaid_bridge.ops import migrate
from plaid_bridge.security.auth import issue_dev_token
from plaid_bridge.services import Services, build_services

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
REQUIRED = os.environ.get("REQUIRE_TEST_SERVICES") == "1"
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


class PostgresDatabases:
    """Creates a migrated template database once, then a copy of it per test."""

    def __init__(self, url: str) -> None:
        self.admin_url = sync_url(url)
        self.admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.template = f"pb_template_{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.template}"'))
        migrate.upgrade(self.url_for(self.template))

    def url_for(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def create(self) -> str:
        name = f"pb_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        self.created.append(name)
        return self.url_for(name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        with self.admin.connect() as connection:
            for name in [*self.created, self.template]:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases | None]:
    if not TEST_DATABASE_URL:
        yield None
        return
    try:
        databases = PostgresDatabases(TEST_DATABASE_URL)
    except Exception as error:
        if REQUIRED:
            raise
        pytest.skip(f"PostgreSQL at TEST_DATABASE_URL unreachable: {error}")
    yield databases
    databases.close()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_databases: PostgresDatabases | None,
) -> Iterator[str]:
    """The URL of a fresh database at the head migration, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "plaid_bridge.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    if postgres_databases is None:
        if REQUIRED:
            pytest.fail("REQUIRE_TEST_SERVICES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("PostgreSQL tests need TEST_DATABASE_URL (CI sets it)")
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database.from_url(database_url)
    yield db
    await db.dispose()


# The service, driven through httpx on the ASGI app, with the emulator on real HTTP.

ENCRYPTION_KEYS = "k1:" + base64.b64encode(b"k" * 32).decode()
JWT_SECRET = "test-jwt-secret-0123456789abcdef"
# Nothing listens on the discard port: emulator webhooks fail fast instead of reaching a dev server.
UNREACHABLE_WEBHOOK = "http://127.0.0.1:9/api/v1/plaid/webhook"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=7, transactions=40), port=0) as server:
        yield server


@pytest.fixture
async def emulator_control(emulator: EmulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    """The emulator's control endpoints; faults cleared around each test."""
    async with httpx.AsyncClient(base_url=emulator.url, timeout=15.0) as client:
        await client.delete("/emulator/faults")
        yield client
        await client.delete("/emulator/faults")


def make_settings(**overrides: Any) -> Settings:
    """Settings isolated from the environment and `.env`."""
    values: dict[str, Any] = {
        "plaid_env": "emulator",
        "plaid_encryption_keys": ENCRYPTION_KEYS,
        "auth_jwt_secret": JWT_SECRET,
        "plaid_webhook_url": UNREACHABLE_WEBHOOK,
        "plaid_max_retries": 2,
        "plaid_retry_backoff_seconds": 0.01,
        "plaid_timeout_seconds": 10,
        "log_format": "json",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str, emulator: EmulatorServer, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url, plaid_api_host=emulator.url, var_dir=tmp_path / "var"
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    built = build_services(settings)
    yield built
    built.plaid.close()
    await built.database.dispose()


class Api:
    """An httpx client on the app, with bearer tokens for any user, org and role."""

    def __init__(self, client: httpx.AsyncClient, app: FastAPI, services: Services) -> None:
        self.client = client
        self.app = app
        self.services = services

        self.extra: list[Services] = []

    def use(self, settings: Settings) -> Services:
        """Serve the following requests with services built from other settings (closed by the
        fixture at teardown)."""
        services = build_services(settings)
        self.extra.append(services)
        self.app.state.services = services
        self.services = services
        return services

    async def close(self) -> None:
        for services in self.extra:
            services.plaid.close()
            await services.database.dispose()

    def token(self, user: str = "u1", org: str = "o1", role: str = "OWNER") -> str:
        return issue_dev_token(self.services.settings, user=user, org=org, role=role)

    def auth(self, user: str = "u1", org: str = "o1", role: str = "OWNER") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, org, role)}"}

    async def public_token(self, institution_id: str = "ins_109508") -> str:
        created = await self.services.plaid.sandbox_public_token_create(
            institution_id=institution_id
        )
        return created.public_token

    async def connect(
        self, *, user: str = "u1", org: str = "o1", institution_id: str = "ins_109508"
    ) -> dict[str, Any]:
        """Link a bank end to end and return the exchange response."""
        response = await self.client.post(
            "/api/v1/plaid/exchange-token",
            json={"publicToken": await self.public_token(institution_id)},
            headers=self.auth(user, org, "MEMBER"),
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def api(services: Services) -> AsyncIterator[Api]:
    app = create_app(services=services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        harness = Api(client, app, services)
        yield harness
        await harness.close()
