"""CORS for the configured origins: a grant with credentials for them, none for others, and
none ever on the webhook or the ops endpoints."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.browser_calls.conftest import COOKIE, ELSEWHERE, FRONTEND, MakeApi, cookie_header
from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,x-xsrf-token,x-request-id",
    }


def _cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith("access-control-")}


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api(cors_allow_origins=f"{FRONTEND},https://app.example.com")


async def test_a_listed_origins_preflight_gets_the_grant_with_credentials(api: Api) -> None:
    response = await api.client.options(f"{BASE}/create-link-token", headers=_preflight(FRONTEND))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type", "x-xsrf-token", "x-request-id"} <= allowed
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "POST", "DELETE"} <= methods
    assert "Origin" in response.headers["vary"]
    assert int(response.headers["access-control-max-age"]) > 0


async def test_an_unlisted_origins_preflight_gets_no_grant(api: Api) -> None:
    for origin in (ELSEWHERE, "http://localhost:3001", "null", "HTTP://LOCALHOST:3000x"):
        response = await api.client.options(f"{BASE}/create-link-token", headers=_preflight(origin))
        assert response.status_code == 403, origin
        assert _cors_headers(dict(response.headers)) == {}, origin
        assert response.json()["error"]["code"] == "CORS_ORIGIN_NOT_ALLOWED"
        assert response.json()["requestId"] == response.headers["x-request-id"]


async def test_a_listed_origins_calls_carry_the_grant_errors_included(api: Api) -> None:
    ok = await api.client.get(
        f"{BASE}/connections", headers={"Origin": FRONTEND, **api.auth(role="VIEWER")}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == FRONTEND
    assert ok.headers["access-control-allow-credentials"] == "true"
    exposed = {h.strip().lower() for h in ok.headers["access-control-expose-headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
    assert "Origin" in ok.headers["vary"]
    # the frontend must be able to read why it was refused
    refused = await api.client.get(f"{BASE}/connections", headers={"Origin": FRONTEND})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == FRONTEND
    missing = await api.client.get(
        f"{BASE}/connections/item-that-is-not-there/health",
        headers={"Origin": FRONTEND, **api.auth()},
    )
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == FRONTEND


async def test_an_unlisted_origins_calls_carry_no_grant(api: Api) -> None:
    response = await api.client.get(
        f"{BASE}/connections", headers={"Origin": ELSEWHERE, **api.auth(role="VIEWER")}
    )
    assert response.status_code == 200  # CORS is the browser's rule; the server only grants
    assert _cors_headers(dict(response.headers)) == {}
    assert "Origin" in response.headers["vary"]


@pytest.mark.parametrize(
    "path", [f"{BASE}/webhook", "/api/v1/integrations/plaid/webhook", "/healthz", "/metrics"]
)
async def test_the_webhook_and_ops_endpoints_stay_outside_cors(api: Api, path: str) -> None:
    preflight = await api.client.options(path, headers=_preflight(FRONTEND))
    assert _cors_headers(dict(preflight.headers)) == {}
    assert preflight.status_code in (400, 404, 405)
    call = await api.client.post(path, content=b"{}", headers={"Origin": FRONTEND})
    assert _cors_headers(dict(call.headers)) == {}
    get = await api.client.get(path, headers={"Origin": FRONTEND})
    assert _cors_headers(dict(get.headers)) == {}


async def test_a_cookie_call_from_the_frontend_passes_cors_and_csrf(make_api: MakeApi) -> None:
    """What a browser on the frontend's origin does: preflight, then the call with cookies."""
    api = await make_api(cors_allow_origins=FRONTEND, auth_cookie_name=COOKIE)
    preflight = await api.client.options(f"{BASE}/create-link-token", headers=_preflight(FRONTEND))
    assert preflight.headers["access-control-allow-origin"] == FRONTEND
    browser = {
        "Origin": FRONTEND,
        **cookie_header({COOKIE: api.token(role="MEMBER"), "XSRF-TOKEN": "t" * 40}),
    }
    refused = await api.client.post(f"{BASE}/create-link-token", json={}, headers=browser)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "CSRF_FAILED"
    assert refused.headers["access-control-allow-origin"] == FRONTEND
    created = await api.client.post(
        f"{BASE}/create-link-token", json={}, headers={**browser, "X-XSRF-TOKEN": "t" * 40}
    )
    assert created.status_code == 201, created.text
    assert created.headers["access-control-allow-origin"] == FRONTEND
    assert created.headers["access-control-allow-credentials"] == "true"


async def test_emulator_mode_allows_the_local_frontend_by_default(make_api: MakeApi) -> None:
    api = await make_api()
    for origin in ("http://localhost:3000", "http://127.0.0.1:3000"):
        response = await api.client.options(
            f"{BASE}/connections", headers=_preflight(origin, "GET")
        )
        assert response.headers["access-control-allow-origin"] == origin
    closed = await make_api(cors_allow_origins="")
    response = await closed.client.options(
        f"{BASE}/connections", headers=_preflight(FRONTEND, "GET")
    )
    assert _cors_headers(dict(response.headers)) == {}


async def test_an_unexpected_error_carries_the_grant(api: Api) -> None:
    """A 500 is answered by the request context, inside CORS: the frontend can read it too."""
    async with api.services.database.transaction() as session:
        await session.execute(text("ALTER TABLE plaid_connections RENAME TO gone"))
    response = await api.client.get(
        f"{BASE}/connections", headers={"Origin": FRONTEND, **api.auth(role="VIEWER")}
    )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert response.headers["access-control-allow-origin"] == FRONTEND
    assert response.headers["access-control-allow-credentials"] == "true"
