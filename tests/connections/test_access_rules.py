"""Who may do what: bearer tokens, roles, tenants, the old frontend's userId."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jwt

from tests.conftest import JWT_SECRET, Api, make_settings

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**extra: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "u1",
        "org_id": "o1",
        "role": "OWNER",
        "exp": int(time.time()) + 600,
    }
    claims.update(extra)
    return claims


async def _status(api: Api, token: str) -> tuple[int, str]:
    response = await api.client.get(
        f"{BASE}/connections", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, response.json().get("error", {}).get("code", "")


async def test_missing_and_bad_tokens_get_401(api: Api) -> None:
    response = await api.client.get(f"{BASE}/connections")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert response.json()["requestId"] == response.headers["x-request-id"]

    expired = jwt.encode(_claims(exp=int(time.time()) - 10), JWT_SECRET, algorithm="HS256")
    no_expiry = jwt.encode(
        {k: v for k, v in _claims().items() if k != "exp"}, JWT_SECRET, algorithm="HS256"
    )
    for_a_year = jwt.encode(_claims(exp=int(time.time()) + 365 * 86_400), JWT_SECRET)
    wrong_key = jwt.encode(_claims(), "another-secret-of-enough-length", algorithm="HS256")
    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    for token in (expired, no_expiry, for_a_year, wrong_key, alg_none, "garbage", ""):
        assert await _status(api, token) == (401, "UNAUTHORIZED"), token


async def test_hs256_signed_with_the_public_key_is_refused(api: Api) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = make_settings(
        database_url=api.services.settings.database_url,
        plaid_api_host=api.services.settings.plaid_host,
        var_dir=api.services.settings.var_dir,
        auth_jwt_secret=None,
        auth_jwt_public_key=public_pem,
    )
    api.use(settings)
    good = jwt.encode(_claims(), private_pem, algorithm="ES256")
    forged = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(_claims())
    signature = hmac.new(public_pem.encode(), forged.encode(), hashlib.sha256).digest()
    forged += "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    ok = await api.client.get(f"{BASE}/connections", headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 200, ok.text
    bad = await api.client.get(f"{BASE}/connections", headers={"Authorization": f"Bearer {forged}"})
    assert bad.status_code == 401


async def test_roles(api: Api) -> None:
    viewer = api.auth(role="VIEWER")
    response = await api.client.post(f"{BASE}/create-link-token", json={}, headers=viewer)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "FORBIDDEN"
    assert (await api.client.get(f"{BASE}/connections", headers=viewer)).status_code == 200
    member = api.auth(role="MEMBER")
    assert (await api.client.get(f"{BASE}/audit", headers=member)).status_code == 403
    item_id = (await api.connect())["itemId"]
    removal = await api.client.delete(f"{BASE}/connections/{item_id}", headers=member)
    assert removal.status_code == 403
    manager = api.auth(role="MANAGER")
    response = await api.client.post(f"{BASE}/create-link-token", json={}, headers=manager)
    assert response.status_code == 201


async def test_user_id_in_body_must_be_the_caller(api: Api) -> None:
    headers = api.auth(user="u1", role="MEMBER")
    response = await api.client.post(
        f"{BASE}/create-link-token", json={"userId": "someone-else"}, headers=headers
    )
    assert response.status_code == 403
    response = await api.client.post(
        f"{BASE}/exchange-token",
        json={"publicToken": await api.public_token(), "userId": "someone-else"},
        headers=headers,
    )
    assert response.status_code == 403
