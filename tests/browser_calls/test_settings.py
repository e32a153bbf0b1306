"""The browser settings: origins as browsers send them, refusals with one line per problem."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from plaid_bridge.config import ConfigError, load_settings

PRODUCTION: dict[str, Any] = {
    "plaid_env": "production",
    "plaid_client_id": "client",
    "plaid_secret": "secret",
    "plaid_webhook_url": "https://bridge.example.com/api/v1/plaid/webhook",
    "plaid_encryption_keys": "k1:" + base64.b64encode(bytes(32)).decode(),
    "database_url": "postgresql+psycopg://bridge@localhost/bridge",
    "auth_jwt_secret": "a-production-secret-of-at-least-32-bytes",
}


def settings(**values: Any) -> Any:
    return load_settings(_env_file=None, **values)


def test_defaults() -> None:
    emulator = settings()
    assert emulator.cors_origins == ("http://localhost:3000", "http://127.0.0.1:3000")
    assert emulator.auth_cookie_name is None
    assert emulator.api_response_envelope == "plain"
    assert settings(**PRODUCTION).cors_origins == ()
    assert settings(cors_allow_origins="").cors_origins == ()


def test_origins_are_written_as_browsers_send_them() -> None:
    configured = settings(
        cors_allow_origins=" https://App.Example.com/ ,https://app.example.com:443,"
        "http://localhost:3000,http://[::1]:5173"
    )
    assert configured.cors_origins == (
        "https://app.example.com",
        "http://localhost:3000",
        "http://[::1]:5173",
    )


def test_the_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "https://a.example.com,https://b.example.com")
    monkeypatch.setenv("AUTH_COOKIE_NAME", "access_token")
    monkeypatch.setenv("API_RESPONSE_ENVELOPE", "operate")
    configured = settings()
    assert configured.cors_origins == ("https://a.example.com", "https://b.example.com")
    assert configured.auth_cookie_name == "access_token"
    assert configured.api_response_envelope == "operate"


def test_bad_values_are_refused_one_line_each() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(
            cors_allow_origins="*,localhost:3000,https://a.example.com/app,https://b:99999",
            auth_cookie_name="access token",
            api_response_envelope="wrapped",
        )
    problems = caught.value.problems
    assert any("CORS_ALLOW_ORIGINS: '*' is not allowed" in line for line in problems)
    assert any("'localhost:3000' is not an origin" in line for line in problems)
    assert any("'https://a.example.com/app': an origin has no path" in line for line in problems)
    assert any("'https://b:99999': the port is not valid" in line for line in problems)
    assert any(line.startswith("AUTH_COOKIE_NAME: must be a cookie name") for line in problems)
    assert any(line.startswith("API_RESPONSE_ENVELOPE:") for line in problems)


def test_production_refuses_plain_http_origins() -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**PRODUCTION, cors_allow_origins="https://app.example.com,http://app.example.com")
    assert caught.value.problems == [
        "CORS_ALLOW_ORIGINS must list https:// origins in production (refused: "
        "http://app.example.com): a page served over plain HTTP can be altered on the way and "
        "would call the API with the user's cookies"
    ]
    assert settings(**PRODUCTION, cors_allow_origins="https://app.example.com").cors_origins
