"""Cookie authentication beside Bearer, and the double-submit CSRF check it needs."""

from __future__ import annotations

import secrets
import time

import pytest
from jose import jwt

from tests.browser_calls.conftest import COOKIE, MakeApi, cookie_header
from tests.conftest import JWT_SECRET, Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api(auth_cookie_name=COOKIE)


def _browser(api: Api, *, xsrf_cookie: str | None, role: str = "MEMBER") -> dict[str, str]:
    values = {COOKIE: api.token(role=role)}
    if xsrf_cookie is not None:
        values["XSRF-TOKEN"] = xsrf_cookie
    return cookie_header(values)


async def test_a_cookie_authenticates_a_get_without_csrf(api: Api) -> None:
    response = await api.client.get(f"{BASE}/connections", headers=_browser(api, xsrf_cookie=None))
    assert response.status_code == 200, response.text
    assert response.json() == []


async def test_a_cookie_post_needs_the_matching_xsrf_header(api: Api) -> None:
    xsrf = secrets.token_urlsafe(32)
    path = f"{BASE}/create-link-token"
    refusals = {
        "no header": _browser(api, xsrf_cookie=xsrf),
        "no cookie": {**_browser(api, xsrf_cookie=None), "X-XSRF-TOKEN": xsrf},
        "another value": {**_browser(api, xsrf_cookie=xsrf), "X-XSRF-TOKEN": xsrf[:-1] + "x"},
        "empty both": {**_browser(api, xsrf_cookie=""), "X-XSRF-TOKEN": ""},
    }
    for name, headers in refusals.items():
        response = await api.client.post(path, json={}, headers=headers)
        assert response.status_code == 403, (name, response.text)
        error = response.json()["error"]
        assert error["code"] == "CSRF_FAILED", name
        assert "X-XSRF-TOKEN" in error["message"]
        assert xsrf not in response.text
        assert response.json()["requestId"] == response.headers["x-request-id"]
    accepted = await api.client.post(
        path, json={}, headers={**_browser(api, xsrf_cookie=xsrf), "X-XSRF-TOKEN": xsrf}
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["linkToken"].startswith("link-")


async def test_every_unsafe_method_is_checked(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    browser = _browser(api, xsrf_cookie="x" * 32, role="OWNER")
    refused = await api.client.delete(f"{BASE}/connections/{item_id}", headers=browser)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "CSRF_FAILED"
    still = await api.client.get(f"{BASE}/connections", headers=browser)
    assert [row["status"] for row in still.json()] == ["ACTIVE"]
    removed = await api.client.delete(
        f"{BASE}/connections/{item_id}", headers={**browser, "X-XSRF-TOKEN": "x" * 32}
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["status"] == "REMOVED"


async def test_bearer_requests_need_no_csrf_token(api: Api) -> None:
    response = await api.client.post(
        f"{BASE}/create-link-token", json={}, headers=api.auth(role="MEMBER")
    )
    assert response.status_code == 201, response.text
    # cookies beside the header change nothing: the header wins and needs no CSRF token
    mixed = {**api.auth(role="MEMBER"), **_browser(api, xsrf_cookie="mismatch")}
    response = await api.client.post(f"{BASE}/create-link-token", json={}, headers=mixed)
    assert response.status_code == 201, response.text


async def test_bearer_wins_over_the_cookie(api: Api) -> None:
    expired = jwt.encode(
        {"sub": "u1", "org_id": "o1", "role": "OWNER", "exp": int(time.time()) - 5},
        JWT_SECRET,
    )
    good_cookie = _browser(api, xsrf_cookie=None)
    refused = await api.client.get(
        f"{BASE}/connections", headers={**good_cookie, "Authorization": f"Bearer {expired}"}
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "The token has expired (exp)."
    bad_cookie = cookie_header({COOKIE: expired})
    accepted = await api.client.get(f"{BASE}/connections", headers={**bad_cookie, **api.auth()})
    assert accepted.status_code == 200, accepted.text


async def test_a_bad_cookie_gets_a_401_naming_the_cookie(api: Api) -> None:
    expired = jwt.encode(
        {"sub": "u1", "org_id": "o1", "role": "OWNER", "exp": int(time.time()) - 5},
        JWT_SECRET,
    )
    response = await api.client.get(f"{BASE}/connections", headers=cookie_header({COOKIE: expired}))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "The token has expired (exp). The token came from the access_token cookie."
    )
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The token has expired"'
    )
    missing = await api.client.get(f"{BASE}/connections")
    assert missing.status_code == 401
    assert missing.json()["error"]["message"] == (
        "Authentication is required: send Authorization: Bearer <token>, "
        "or the access_token cookie."
    )
    assert missing.headers["www-authenticate"] == "Bearer"


async def test_without_auth_cookie_name_cookies_are_ignored(make_api: MakeApi) -> None:
    api = await make_api()
    response = await api.client.get(f"{BASE}/connections", headers=_browser(api, xsrf_cookie=None))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "Authentication is required: send Authorization: Bearer <token>."
    )


async def test_the_webhook_ignores_cookies(make_api: MakeApi) -> None:
    api = await make_api(auth_cookie_name=COOKIE, plaid_webhook_verify=False)
    body = b'{"webhook_type": "ITEM", "webhook_code": "WEBHOOK_UPDATE_ACKNOWLEDGED"}'
    # a browser's cookies, without any CSRF header: the webhook neither reads nor checks them
    response = await api.client.post(
        f"{BASE}/webhook",
        content=body,
        headers={**_browser(api, xsrf_cookie="x" * 32), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True}
