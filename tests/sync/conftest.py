"""Sync tests: small pages so that the emulator's 40-transaction Items take several pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from plaid_bridge.config import Settings
from plaid_bridge.emulator import EmulatorServer
from tests.conftest import make_settings

PAGE_SIZE = 7


@pytest.fixture
def settings(database_url: str, emulator: EmulatorServer, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        plaid_api_host=emulator.url,
        var_dir=tmp_path / "var",
        sync_page_size=PAGE_SIZE,
        sync_retry_backoff_seconds=0,
        plaid_timeout_seconds=3,
    )
