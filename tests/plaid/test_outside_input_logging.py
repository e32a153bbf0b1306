"""Plaid refusing a value an outsider sent (a user's public token, a webhook's made-up `kid`) is
a warning in our log, not an error: anyone can send such values and nothing of ours is broken.
Our own mistakes (e.g. bad API keys) stay errors."""

from __future__ import annotations

import logging

import pytest

from plaid_bridge.plaid.client import PlaidClient
from plaid_bridge.plaid.errors import PlaidError
from tests.conftest import Api

pytestmark = pytest.mark.anyio


async def test_a_bad_public_token_is_a_400_and_a_warning(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="plaid_bridge"):
        response = await api.client.post(
            "/api/v1/plaid/exchange-token",
            json={"publicToken": "public-sandbox-made-up"},
            headers=api.auth(role="MEMBER"),
        )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_PUBLIC_TOKEN"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    [call] = [r for r in caplog.records if r.__dict__.get("event") == "plaid.call"]
    assert (call.levelno, call.__dict__["error_code"]) == (logging.WARNING, "INVALID_PUBLIC_TOKEN")


async def test_an_unknown_webhook_key_is_a_warning_and_bad_keys_an_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    settings = api.services.settings
    wrong_keys = PlaidClient(
        host=settings.plaid_host, client_id="not-our-client", secret="wrong", max_retries=0
    )
    with caplog.at_level(logging.INFO, logger="plaid_bridge"):
        with pytest.raises(PlaidError):
            await api.services.plaid.get_webhook_verification_key(key_id="made-up", retry=False)
        with pytest.raises(PlaidError):
            await wrong_keys.get_webhook_verification_key(key_id="made-up")
    wrong_keys.close()

    calls = [r for r in caplog.records if r.__dict__.get("event") == "plaid.call"]
    assert [(r.levelno, r.__dict__["error_code"]) for r in calls] == [
        (logging.WARNING, "INVALID_WEBHOOK_VERIFICATION_KEY_ID"),
        (logging.ERROR, "INVALID_API_KEYS"),
    ]


async def test_a_public_token_used_twice_is_a_client_mistake_not_ours(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    public_token = await api.public_token()
    body = {"publicToken": public_token}
    first = await api.client.post(
        "/api/v1/plaid/exchange-token", json=body, headers=api.auth(role="MEMBER")
    )
    assert first.status_code == 201, first.text
    with caplog.at_level(logging.INFO, logger="plaid_bridge"):
        again = await api.client.post(
            "/api/v1/plaid/exchange-token", json=body, headers=api.auth(role="MEMBER")
        )

    assert again.status_code == 400, again.text
    assert again.json()["error"]["code"] == "INVALID_PUBLIC_TOKEN"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert {r.levelno for r in caplog.records if r.__dict__.get("event") == "plaid.call"} == {
        logging.WARNING
    }
