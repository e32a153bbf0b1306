"""Liveness and readiness, without auth."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import Api, make_settings

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


async def test_readyz_logs_nothing_of_alembic(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            assert (await api.client.get("/readyz")).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


async def test_readyz_is_503_before_migrations(api: Api, tmp_path: Path) -> None:
    api.use(
        make_settings(
            database_url=f"sqlite:///{tmp_path / 'empty.db'}",
            plaid_api_host=api.services.settings.plaid_host,
            var_dir=tmp_path,
        )
    )
    response = await api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "MIGRATIONS_PENDING"
    assert response.headers["retry-after"] == "30"
