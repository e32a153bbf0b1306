"""The demo page's routes: served in emulator mode only, configured from settings, and the
development token endpoint it signs in with (the browser flow is in tests/browser)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from plaid_bridge.app import create_app
from plaid_bridge.config import API_PREFIX
from plaid_bridge.security.auth import Role
from tests.conftest import Api, make_settings

pytestmark = pytest.mark.anyio

TOKEN_PATH = f"{API_PREFIX}/dev/token"


async def test_dev_token_is_a_jwt_the_service_accepts(api: Api) -> None:
    response = await api.client.post(
        TOKEN_PATH, json={"userId": "u7", "orgId": "o7", "role": "MEMBER"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "tokenType", "cookieName", "expiresAt"}
    assert (body["tokenType"], body["cookieName"]) == ("Bearer", None)
    assert "set-cookie" not in response.headers
    principal = api.services.verifier.verify(body["token"])
    assert (principal.user_id, principal.org_id, principal.role) == ("u7", "o7", Role.MEMBER)
    assert datetime.fromisoformat(body["expiresAt"]).timestamp() > 0

    headers = {"Authorization": f"Bearer {body['token']}"}
    created = await api.client.post(f"{API_PREFIX}/create-link-token", json={}, headers=headers)
    assert created.status_code == 201
    listed = await api.client.get(f"{API_PREFIX}/connections", headers=headers)
    assert listed.json() == []


@pytest.mark.parametrize(
    "body",
    [
        {"userId": "u1", "orgId": "o1", "role": "SUPERUSER"},
        {"userId": "", "orgId": "o1"},
        {"orgId": "o1"},
        {"userId": "u1", "orgId": "x" * 129},
    ],
)
async def test_dev_token_refuses_what_it_cannot_issue(api: Api, body: dict[str, Any]) -> None:
    response = await api.client.post(TOKEN_PATH, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


async def test_dev_token_as_cookies(api: Api) -> None:
    settings = api.services.settings
    for cookie_name, expect_off in (("access_token", False), (None, True)):
        api.use(settings.model_copy(update={"auth_cookie_name": cookie_name}))
        response = await api.client.post(
            TOKEN_PATH, json={"userId": "u1", "orgId": "o1", "cookie": True}
        )
        if expect_off:
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "COOKIE_AUTH_DISABLED"
            continue
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["token"], body["tokenType"], body["cookieName"]) == (
            None,
            "Cookie",
            "access_token",
        )
        cookies = {
            line.split("=", 1)[0]: line.lower() for line in response.headers.get_list("set-cookie")
        }
        assert set(cookies) == {"access_token", "XSRF-TOKEN"}
        assert "httponly" in cookies["access_token"]
        assert "samesite=lax" in cookies["access_token"]
        assert "httponly" not in cookies["XSRF-TOKEN"]
        assert "samesite=lax" in cookies["XSRF-TOKEN"]
        token = response.cookies["access_token"]
        assert api.services.verifier.verify(token).user_id == "u1"


async def test_the_page_points_at_the_configured_emulator(api: Api) -> None:
    page = await api.client.get("/demo")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["referrer-policy"] == "no-referrer"
    emulator = api.services.settings.plaid_host
    assert f'<meta name="plaid-bridge-emulator" content="{emulator}">' in page.text
    assert f'<script src="{emulator}/link/v2/stable/link-initialize.js"></script>' in page.text
    assert '<meta name="plaid-bridge-api" content="">' in page.text
    assert "{{" not in page.text

    script = await api.client.get("/demo/demo.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "/dev/token" in script.text
    style = await api.client.get("/demo/demo.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    for name in ("demo.html", "nope.js", "..%2Fpage.py"):
        missing = await api.client.get(f"/demo/{name}")
        assert missing.status_code == 404, name
        assert missing.json()["error"]["code"] == "NOT_FOUND"


async def test_the_openapi_document_marks_the_token_endpoint_as_development_only(
    api: Api,
) -> None:
    document = (await api.client.get("/openapi.json")).json()
    operation = document["paths"][TOKEN_PATH]["post"]
    assert operation["tags"] == ["development"]
    assert "emulator mode only" in operation["summary"]
    assert operation["description"].startswith("**Development only.**")
    assert not [path for path in document["paths"] if path.startswith("/demo")]


async def test_nothing_of_it_exists_outside_emulator_mode() -> None:
    settings = make_settings(
        plaid_env="sandbox",
        plaid_client_id="client-id",
        plaid_secret="sandbox-secret",
        plaid_webhook_url="https://bridge.example.com/api/v1/plaid/webhook",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for method, path in (("GET", "/demo"), ("GET", "/demo/demo.js"), ("POST", TOKEN_PATH)):
            response = await client.request(method, path, json={"userId": "u", "orgId": "o"})
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "NOT_FOUND"
        document = (await client.get("/openapi.json")).json()
    assert TOKEN_PATH not in document["paths"]
