"""Start-up validation: one clear line per problem, and no half-configured start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from plaid_bridge.config import DEV_JWT_SECRET, ConfigError, Settings, load_settings
from plaid_bridge.security.auth import Role, TokenVerifier

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
        "AUTH_JWT_SECRET": "a-long-production-secret-value-0123",
        "DATABASE_URL": "sqlite:///var/x.db",
    }
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "https://" in result.stderr
    assert "SQLite" in result.stderr
    assert "secret-value" not in result.stderr


PRODUCTION = {
    "plaid_env": "production",
    "plaid_client_id": "id",
    "plaid_secret": "secret-value",
    "plaid_webhook_url": "https://bridge.example.com/api/v1/plaid/webhook",
    "plaid_encryption_keys": "k1:" + "A" * 43 + "=",
    "auth_jwt_secret": "s" * 32,
    "database_url": "postgresql+psycopg://bridge@db.internal/bridge",
}


def production(**overrides: object) -> Settings:
    return load_settings(_env_file=None, **{**PRODUCTION, **overrides})


def refusal(**overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        production(**overrides)
    return caught.value.problems


def test_the_production_baseline_starts() -> None:
    settings = production(
        plaid_api_host="https://production.plaid.com",
        rate_limit_storage_uri="redis://redis.internal:6379/0",
        web_concurrency=4,
        worker_mode="external",
    )
    assert settings.auth_jwt_max_lifetime_seconds == 86_400
    assert production(auth_jwt_secret="é" * 16).plaid_env == "production"  # 32 bytes of UTF-8


def test_production_refuses_a_short_jwt_secret() -> None:
    assert refusal(auth_jwt_secret="s" * 31) == [
        "AUTH_JWT_SECRET must be at least 32 bytes in production"
    ]
    assert refusal(auth_jwt_secret="x") == [
        "AUTH_JWT_SECRET must be at least 32 bytes in production"
    ]


@pytest.mark.parametrize("host", ["http://production.plaid.com", "HTTP://10.0.0.5:8100"])
def test_production_refuses_a_plaid_host_without_tls(host: str) -> None:
    assert refusal(plaid_api_host=host) == [
        "PLAID_API_HOST must be an https:// URL in production "
        "(the Plaid secret travels with every call)"
    ]


@pytest.mark.parametrize(
    ("processes", "declared"),
    [
        ({"web_concurrency": 2}, "WEB_CONCURRENCY=2, WORKER_MODE=embedded"),
        ({"worker_mode": "external"}, "WEB_CONCURRENCY=1, WORKER_MODE=external"),
    ],
)
def test_production_refuses_memory_limits_when_several_processes_serve(
    processes: dict[str, object], declared: str
) -> None:
    assert refusal(rate_limit_storage_uri="memory://", **processes) == [
        "RATE_LIMIT_STORAGE_URI=memory:// cannot share limits between processes "
        f"({declared}); use redis://host:port/db in production"
    ]
    # one embedded process keeps its limits in memory legitimately
    assert production(rate_limit_storage_uri="memory://").web_concurrency == 1


@pytest.mark.parametrize("env", ["sandbox", "production"])
def test_deployments_refuse_to_start_without_their_own_jwt_key(env: str) -> None:
    assert refusal(plaid_env=env, auth_jwt_secret=None) == [
        f"AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY is required in {env}"
    ]
    assert refusal(plaid_env=env, auth_jwt_secret=DEV_JWT_SECRET) == [
        f"AUTH_JWT_SECRET must not be the development secret in {env}"
    ]
    assert production(plaid_env=env, auth_jwt_secret=None, auth_jwt_public_key="pem").plaid_env


def test_sandbox_accepts_its_own_secret_whatever_its_length() -> None:
    assert production(plaid_env="sandbox", auth_jwt_secret="short").plaid_env == "sandbox"


def test_serve_refuses_a_misconfigured_production_with_its_line(tmp_path: Path) -> None:
    env = {name.upper(): value for name, value in PRODUCTION.items()}
    refused = {
        **env,
        "AUTH_JWT_SECRET": "too-short",
        "PLAID_API_HOST": "http://production.plaid.com",
        "WORKER_MODE": "external",
    }
    result = run_cli("serve", "--port", "9000", env=refused, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "plaid-bridge cannot start; the configuration has problems:",
        "  - AUTH_JWT_SECRET must be at least 32 bytes in production",
        "  - PLAID_API_HOST must be an https:// URL in production "
        "(the Plaid secret travels with every call)",
        "  - RATE_LIMIT_STORAGE_URI=memory:// cannot share limits between processes "
        "(WEB_CONCURRENCY=1, WORKER_MODE=external); use redis://host:port/db in production",
    ]
    assert "too-short" not in result.stderr


def test_serve_workers_flag_counts_as_several_processes(tmp_path: Path) -> None:
    env = {name.upper(): value for name, value in PRODUCTION.items()}
    result = run_cli("serve", "--port", "9000", "--workers", "3", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "(WEB_CONCURRENCY=3, WORKER_MODE=embedded)" in result.stderr


def test_sandbox_serve_refuses_the_development_secret(tmp_path: Path) -> None:
    env = {"PLAID_ENV": "sandbox", "PLAID_CLIENT_ID": "id", "PLAID_SECRET": "secret-value"}
    result = run_cli("serve", "--port", "9000", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "  - AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY is required in sandbox" in (
        result.stderr.splitlines()
    )
    token = run_cli("dev-token", "--user", "u", "--org", "o", env=env, cwd=tmp_path)
    assert token.returncode == 2
    assert token.stdout == ""


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
    verifier = TokenVerifier.from_settings(load_settings(_env_file=None))
    assert verifier.verify(token.stdout.strip()).role is Role.ADMIN
    upgrade = run_cli("db", "upgrade", env={}, cwd=tmp_path)
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "var" / "plaid_bridge.db").exists()


@pytest.mark.parametrize("spelled", ["admin", "Admin", "ADMIN"])
def test_dev_token_roles_are_case_insensitive(tmp_path: Path, spelled: str) -> None:
    token = run_cli(
        "dev-token", "--user", "u", "--org", "o", "--role", spelled, env={}, cwd=tmp_path
    )
    assert token.returncode == 0, token.stderr
    principal = TokenVerifier.from_settings(load_settings(_env_file=None)).verify(
        token.stdout.strip()
    )
    assert principal.role is Role.ADMIN


def test_dev_token_refuses_an_unknown_role(tmp_path: Path) -> None:
    token = run_cli(
        "dev-token", "--user", "u", "--org", "o", "--role", "boss", env={}, cwd=tmp_path
    )
    assert token.returncode == 2
    assert "invalid choice: 'BOSS'" in token.stderr
