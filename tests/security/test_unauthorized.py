"""Every 401 says which check failed, carries an RFC 6750 challenge and never echoes the token."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jose import jws, jwt

from plaid_bridge.redaction import REDACTED
from tests.conftest import JWT_SECRET, Api, make_settings

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
AUDIENCE = "plaid-bridge"
ISSUER = "https://idp.example.test"


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "u1",
        "org_id": "o1",
        "role": "OWNER",
        "iat": now,
        "exp": now + 600,
        "aud": AUDIENCE,
        "iss": ISSUER,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _signed(**changes: Any) -> str:
    return jwt.encode(_claims(**changes), JWT_SECRET, algorithm="HS256")


@dataclass(frozen=True)
class Case:
    """A request's Authorization header, and what its 401 must say."""

    authorization: str | None
    message: str
    challenge: str


def _invalid(description: str) -> str:
    return f'Bearer error="invalid_token", error_description="{description}"'


NOW = int(time.time())
CASES = {
    "missing": Case(
        None, r"^Authentication is required: send Authorization: Bearer <token>\.$", "Bearer"
    ),
    "another scheme": Case("Basic dXNlcjpwYXNzd29yZA==", "must use the Bearer scheme", "Bearer"),
    "bearer without a token": Case("Bearer ", "no token after Bearer", "Bearer"),
    "malformed": Case(
        "Bearer not-a-jwt-but-long-enough-to-look-like-one",
        "malformed: a JWT is three base64url parts",
        _invalid("The token is malformed"),
    ),
    "signed payload not json": Case(
        "Bearer " + jws.sign(b"[1, 2]", JWT_SECRET, algorithm="HS256"),
        "payload is not a JSON object",
        _invalid("The token is malformed"),
    ),
    "garbage signature": Case(
        f"Bearer {_b64({'alg': 'HS256'})}.{_b64(_claims())}.c2lnbmF0dXJl",
        "signature does not verify",
        _invalid("The token's signature is invalid"),
    ),
    "bad signature": Case(
        "Bearer " + jwt.encode(_claims(), "another-secret-of-sufficient-length"),
        "signature does not verify with this service's key",
        _invalid("The token's signature is invalid"),
    ),
    "algorithm not accepted": Case(
        "Bearer " + jwt.encode(_claims(), JWT_SECRET, algorithm="HS512"),
        r"algorithm this service does not accept \(accepted: HS256\)",
        _invalid("The token's signing algorithm is not accepted"),
    ),
    "alg none": Case(
        f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.",
        "algorithm this service does not accept",
        _invalid("The token's signing algorithm is not accepted"),
    ),
    "expired": Case(
        "Bearer " + _signed(iat=NOW - 3600, exp=NOW - 60),
        r"^The token has expired \(exp\)\.$",
        _invalid("The token has expired"),
    ),
    "not yet valid": Case(
        "Bearer " + _signed(nbf=NOW + 3600, exp=NOW + 7200),
        r"not valid yet \(nbf\)",
        _invalid("The token is not valid yet"),
    ),
    "lives too long": Case(
        "Bearer " + _signed(exp=NOW + 365 * 86_400),
        "lifetime .* exceeds the allowed maximum of 86400 seconds",
        _invalid("The token lives longer than allowed"),
    ),
    "wrong audience": Case(
        "Bearer " + _signed(aud="another-service"),
        r"meant for another audience \(aud\)",
        _invalid("The token is for another audience"),
    ),
    "wrong issuer": Case(
        "Bearer " + _signed(iss="https://elsewhere.example.test"),
        r"issued by another issuer \(iss\)",
        _invalid("The token is from another issuer"),
    ),
    **{
        f"missing {claim}": Case(
            "Bearer " + _signed(**{claim: None}),
            rf"has no \w+ claim \({claim}",
            _invalid(f"The token lacks a required claim ({claim})"),
        )
        for claim in ("exp", "sub", "org_id", "role", "aud", "iss")
    },
    "unknown role": Case(
        "Bearer " + _signed(role="SUPERUSER"),
        r"role claim \(role\) is not one of VIEWER, MEMBER, MANAGER, ADMIN, OWNER",
        _invalid("The token has an invalid claim (role)"),
    ),
    "exp not a number": Case(
        "Bearer " + _signed(exp="tomorrow"),
        "exp claim must be a number",
        _invalid("The token has an invalid claim (exp)"),
    ),
}


@pytest.fixture
async def strict(api: Api, database_url: str, emulator: Any, tmp_path: Any) -> Api:
    """The service with an audience and an issuer configured."""
    api.use(
        make_settings(
            database_url=database_url,
            plaid_api_host=emulator.url,
            var_dir=tmp_path / "var",
            auth_jwt_audience=AUDIENCE,
            auth_jwt_issuer=ISSUER,
        )
    )
    return api


async def _refused(api: Api, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await api.client.get(f"{BASE}/connections", headers=headers)
    assert response.status_code == 401, response.text
    return response


@pytest.mark.parametrize("name", list(CASES))
async def test_each_cause_has_its_own_401(strict: Api, name: str) -> None:
    case = CASES[name]
    response = await _refused(strict, case.authorization)
    error = response.json()["error"]
    assert error["code"] == "UNAUTHORIZED"
    assert re.search(case.message, error["message"]), error["message"]
    assert response.headers["www-authenticate"] == case.challenge
    assert response.json()["requestId"] == response.headers["x-request-id"]
    token = (case.authorization or "").partition(" ")[2]
    for part in [token, *token.split(".")]:
        if len(part) >= 8:
            assert part not in response.text


async def test_no_401_message_is_redacted(strict: Api) -> None:
    """The redaction rule masks tokens, never the words of a message about them."""
    messages = [
        (await _refused(strict, case.authorization)).json()["error"]["message"]
        for case in CASES.values()
    ]
    assert len(messages) == len(CASES)
    assert [message for message in messages if REDACTED in message] == []


async def test_a_valid_token_still_passes(strict: Api) -> None:
    response = await strict.client.get(
        f"{BASE}/connections", headers={"Authorization": f"Bearer {_signed()}"}
    )
    assert response.status_code == 200, response.text
    assert "www-authenticate" not in response.headers


async def test_the_webhooks_401_carries_a_challenge_too(api: Api) -> None:
    response = await api.client.post(f"{BASE}/webhook", content=b"{}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "WEBHOOK_VERIFICATION_FAILED"
    assert response.headers["www-authenticate"] == "Bearer"
