"""Start-up validation: one clear line per problem, and no half-configured start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plaid_bridge.config import ConfigError, load_settings

CLEAN_ENV = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plaid_bridge.cli", *args],
        env={**CLEAN_ENV, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_without_settings_lists_every_problem(tmp_path: Path) -> None:
    result = run_cli("serve", env={"PLAID_ENV": "production"}, cwd=tmp_path)
    assert result.returncode == 2
    for variable in (
        "PLAID_CLIENT_ID",
        "PLAID_SECRET",
        "PLAID_WEBHOOK_URL",
        "PLAID_ENCRYPTION_KEYS",
        "AUTH_JWT_SECRET",
        "DATABASE_URL",
    ):
        assert variable in result.stderr, variable
    assert "Traceback" not in result.stderr


def test_production_refuses_http_webhook_and_sqlite(tmp_path: Path) -> None:
    env = {
        "PLAID_ENV": "production",
        "PLAID_CLIENT_ID": "id",
        "PLAID_SECRET": "secret-value",
        "PLAID_WEBHOOK_URL": "http://example.test/hook",
        "PLAID_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=",
        "AUTH_JWT_SECRET": "a-long-production-secret-value",
        "DATABASE_URL": "sqlite:///var/x.db",
    }
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "https://" in result.stderr
    assert "SQLite" in result.stderr
    assert "secret-value" not in result.stderr


def test_development_environment_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, plaid_env="development")
    assert "retired" in str(caught.value)
    assert "sandbox" in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"plaid_products": "transactions,balance"}, "balance"),
        ({"plaid_transactions_days_requested": 731}, "PLAID_TRANSACTIONS_DAYS_REQUESTED"),
        ({"plaid_timeout_seconds": 0}, "PLAID_TIMEOUT_SECONDS"),
        ({"auth_jwt_algorithms": "HS256,none"}, "none"),
        ({"plaid_env": "staging"}, "PLAID_ENV"),
        ({"plaid_rate_limits": "/accounts/get=many/item"}, "PLAID_RATE_LIMITS"),
        ({"rate_limit_storage_uri": "mongodb://db"}, "RATE_LIMIT_STORAGE_URI"),
    ],
)
def test_invalid_values_are_named(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, **overrides)
    assert fragment in str(caught.value)


def test_dev_token_is_refused_in_production(tmp_path: Path) -> None:
    result = run_cli(
        "dev-token", "--user", "u", "--org", "o", env={"PLAID_ENV": "production"}, cwd=tmp_path
    )
    assert result.returncode == 2


def test_dev_token_and_db_upgrade_work_offline(tmp_path: Path) -> None:
    token = run_cli(
        "dev-token", "--user", "u", "--org", "o", "--role", "ADMIN", env={}, cwd=tmp_path
    )
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2
    upgrade = run_cli("db", "upgrade", env={}, cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "var" / "plaid_bridge.db").exists()
