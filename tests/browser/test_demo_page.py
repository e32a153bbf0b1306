"""The demo page in Chromium against the live service (uvicorn on loopback, its embedded worker,
the emulator's webhooks verified): link a bank and see its data, see a Link error, break and
repair a connection; and /docs rendered without the network."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, ViewportSize, expect
from playwright.sync_api import Request as PwRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as HttpRoute

from plaid_bridge.app import create_app
from plaid_bridge.config import API_PREFIX, Settings
from plaid_bridge.demo.page import asset, page_html
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.emulator.errors import CATALOGUE
from plaid_bridge.security.auth import issue_dev_token
from plaid_bridge.serving import BackgroundServer
from tests.browser.conftest import SCREENSHOTS, VIEWPORT, Screenshot
from tests.browser.link_frame import LinkFrame, link_through_success
from tests.conftest import make_settings
from tests.dev_process import DevProcess, dev

__all__ = ["dev"]  # the fixture, imported for the test that runs `plaid-bridge dev`

USER, ORG = "demo-user", "demo-org"
TALL: ViewportSize = {"width": 1024, "height": 1900}


@dataclass
class LiveService:
    """The service under uvicorn, and an HTTP client that checks what the page shows."""

    url: str
    settings: Settings

    def get(self, path: str, **params: Any) -> Any:
        token = issue_dev_token(self.settings, user=USER, org=ORG, role="VIEWER")
        response = httpx.get(
            f"{self.url}{API_PREFIX}{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def service(
    database_url: str, link_emulator: EmulatorServer, tmp_path: Path
) -> Iterator[LiveService]:
    """The whole app on its own port: its lifespan, its embedded worker, webhooks from the
    emulator to its real webhook URL."""
    with BackgroundServer() as server:
        settings = make_settings(
            database_url=database_url,
            plaid_api_host=link_emulator.url,
            plaid_webhook_url=f"{server.url}{API_PREFIX}/webhook",
            var_dir=tmp_path / "var",
        )
        server.serve(create_app(settings), name="plaid-bridge")
        yield LiveService(server.url, settings)


def open_demo(page: Page, url: str) -> None:
    page.set_viewport_size(TALL)  # the whole page in each screenshot
    page.goto(f"{url}/demo")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("connect")).to_be_disabled()


def sign_in(page: Page, *, role: str = "OWNER", auth: str = "bearer") -> None:
    page.get_by_test_id("user-id").fill(USER)
    page.get_by_test_id("org-id").fill(ORG)
    page.get_by_test_id("role").select_option(role)
    page.get_by_test_id(f"auth-{auth}").check()
    page.get_by_test_id("sign-in").click()
    expect(page.get_by_test_id("identity-status")).to_have_attribute("data-signed-in", "true")
    expect(page.get_by_test_id("connect")).to_be_enabled()


def link_a_bank(page: Page) -> str:
    """Connect First Platypus Bank through Link with user_good; the new connection's item id
    once the page shows its first transactions."""
    page.get_by_test_id("connect").click()
    link_through_success(page)
    expect(page.get_by_test_id("link-outcome")).to_have_text(
        re.compile(r"^Connected First Platypus Bank \(.+\)\.$")
    )
    row = page.get_by_test_id("connection-row")
    expect(row).to_have_count(1)
    item_id = row.get_attribute("data-item-id")
    assert item_id
    expect(page.get_by_test_id("transaction-row")).to_have_count(10)
    return item_id


def test_links_a_bank_and_shows_its_accounts_and_transactions(
    page: Page, service: LiveService, screenshot: Screenshot
) -> None:
    open_demo(page, service.url)
    screenshot("start")
    sign_in(page)
    expect(page.get_by_test_id("connections-empty")).to_be_visible()
    item_id = link_a_bank(page)
    expect(page.get_by_test_id("connection-status")).to_have_text("ACTIVE")
    expect(page.get_by_test_id("health-status")).to_have_text("HEALTHY")
    expect(page.get_by_test_id("connections-empty")).to_be_hidden()
    last_synced = page.get_by_test_id("connection-row").locator("td").nth(3)
    expect(last_synced).not_to_have_text("not yet")
    screenshot("connected")

    # What the page shows is what the API holds for this user's org.
    [connection] = service.get("/connections")
    assert connection["itemId"] == item_id
    assert connection["institutionName"] == "First Platypus Bank"
    accounts = service.get(f"/accounts/{item_id}")
    shown_accounts = page.get_by_test_id("account-row")
    expect(shown_accounts).to_have_count(len(accounts))
    for index, account in enumerate(accounts):
        expect(shown_accounts.nth(index).locator("td").first).to_have_text(account["name"])
    latest = service.get("/transactions", itemId=item_id, limit=10)["transactions"]
    shown = page.get_by_test_id("transaction-row")
    for index, transaction in enumerate(latest):
        cells = shown.nth(index).locator("td")
        expect(cells.nth(0)).to_have_text(transaction["date"])
        expect(cells.nth(1)).to_have_text(transaction["merchant_name"] or transaction["name"])
    calls = page.get_by_test_id("log").locator("li code").all_inner_texts()
    assert "POST /exchange-token" in calls
    assert "POST /create-link-token" in calls
    assert all(re.match(r"^(GET|POST) /", call) for call in calls), calls  # the API's paths


def test_the_demo_page_under_plaid_bridge_dev(
    page: Page, dev: DevProcess, screenshot: Screenshot
) -> None:
    """What a newcomer meets after `make run`: the page served by `plaid-bridge dev` itself,
    linking through the emulator it started, the first sync run by its embedded worker."""
    dev.start()
    open_demo(page, dev.api)
    sign_in(page)
    link_a_bank(page)
    expect(page.get_by_test_id("connection-status")).to_have_text("ACTIVE")
    screenshot("connected-under-dev")


def test_a_link_error_is_shown_from_on_exit(
    page: Page, service: LiveService, screenshot: Screenshot
) -> None:
    open_demo(page, service.url)
    sign_in(page)
    page.get_by_test_id("connect").click()
    frame = LinkFrame(page)
    frame.choose_institution("ins_109508")
    frame.log_in("user_good", "error_ITEM_LOCKED")
    frame.wait_for_view("ERROR")
    screenshot("link-error")
    frame.exit_from_error()

    outcome = page.get_by_test_id("link-outcome")
    expect(outcome).to_have_text(
        f"Link exited: ITEM_LOCKED — {CATALOGUE['ITEM_LOCKED'].display_message} "
        "(status requires_credentials)"
    )
    expect(outcome).to_have_attribute("data-outcome", "error")
    expect(page.get_by_test_id("connections-empty")).to_be_visible()
    expect(page.get_by_test_id("connect")).to_be_enabled()
    screenshot("exit-with-error")
    assert service.get("/connections") == []


def test_breaks_the_connection_and_repairs_it_in_update_mode(
    page: Page, service: LiveService, link_emulator: EmulatorServer, screenshot: Screenshot
) -> None:
    open_demo(page, service.url)
    sign_in(page)
    item_id = link_a_bank(page)

    page.get_by_test_id("break").click()
    expect(page.get_by_test_id("connection-status")).to_have_text("LOGIN_REQUIRED")
    expect(page.get_by_test_id("health-status")).to_have_text("CRITICAL")
    expect(page.get_by_test_id("connection-row-status")).to_have_text("LOGIN_REQUIRED")
    screenshot("broken")
    assert service.get(f"/connections/{item_id}/health")["needsReauth"] is True

    page.get_by_test_id("repair").click()
    frame = LinkFrame(page)
    frame.wait_for_view("CREDENTIAL")  # update mode: the bank is known, only the login is asked
    screenshot("update-mode-link")
    link_through_success(page)
    expect(page.get_by_test_id("link-outcome")).to_have_text(
        "Repaired First Platypus Bank: ACTIVE."
    )
    expect(page.get_by_test_id("connection-status")).to_have_text("ACTIVE")
    expect(page.get_by_test_id("health-status")).to_have_text("HEALTHY")
    screenshot("repaired")

    health = service.get(f"/connections/{item_id}/health", live="true")
    assert (health["status"], health["needsReauth"]) == ("HEALTHY", False)
    items = httpx.get(f"{link_emulator.url}/emulator/items", trust_env=False).json()["items"]
    [item] = [item for item in items if item["itemId"] == item_id]
    assert item["errorCode"] is None
    calls = page.get_by_test_id("log").locator("li code").all_inner_texts()
    assert f"POST {link_emulator.url}/emulator/items/{item_id}/reset-login" in calls
    assert f"POST /connections/{item_id}/reauth/complete" in calls


def test_a_role_that_cannot_link_sees_the_api_error(
    page: Page, service: LiveService, screenshot: Screenshot
) -> None:
    open_demo(page, service.url)
    sign_in(page, role="VIEWER")
    page.get_by_test_id("connect").click()
    error = page.get_by_test_id("error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("POST /create-link-token failed: FORBIDDEN")
    expect(page.locator('iframe[data-testid="plaid-link-iframe"]')).to_have_count(0)
    screenshot("forbidden")


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def docs_service(tmp_path: Path) -> Iterator[str]:
    """The app for its API description only: no database is touched, no worker runs."""
    with BackgroundServer() as server:
        settings = make_settings(
            database_url=f"sqlite:///{tmp_path / 'unused.db'}",
            var_dir=tmp_path / "var",
            worker_mode="external",
        )
        server.serve(create_app(settings), name="plaid-bridge-docs")
        yield server.url


def test_docs_render_offline_with_the_authorize_button(browser: Browser, docs_service: str) -> None:
    # A context of its own, so that the only requests it makes are the docs page's.
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    blocked: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    try:
        page.route("**/*", loopback_only)
        page.goto(f"{docs_service}/docs")
        expect(page.locator(".swagger-ui")).to_be_visible()
        expect(page.get_by_role("button", name=re.compile(r"^Authorize"))).to_be_visible()
        assert blocked == []
        page.screenshot(path=str(docs_screenshot()))
    finally:
        context.close()


def docs_screenshot() -> Path:
    folder = SCREENSHOTS / "test_docs_render_offline_with_the_authorize_button"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "01-docs.png"


def frontend_app(api_url: str, emulator_url: str) -> Starlette:
    """The demo page served from another origin, as a frontend's dev server would serve it."""

    async def index(_request: Request) -> HTMLResponse:
        return HTMLResponse(page_html(emulator_url=emulator_url, api_base=api_url))

    async def file(request: Request) -> Response:
        found = asset(request.path_params["name"])
        if found is None:
            return Response(status_code=404)
        return Response(found[0], media_type=found[1])

    return Starlette(routes=[HttpRoute("/demo", index), HttpRoute("/demo/{name}", file)])


@dataclass
class CrossOrigin:
    frontend: str  # http://localhost:<p1>: the page
    api: str  # http://localhost:<p2>: the service (same site, another origin)


@pytest.fixture
def cross_origin(
    database_url: str, link_emulator: EmulatorServer, tmp_path: Path
) -> Iterator[CrossOrigin]:
    with BackgroundServer() as api_server, BackgroundServer() as page_server:
        frontend = f"http://localhost:{page_server.port}"
        api = f"http://localhost:{api_server.port}"
        settings = make_settings(
            database_url=database_url,
            plaid_api_host=link_emulator.url,
            plaid_webhook_url=f"{api_server.url}{API_PREFIX}/webhook",
            var_dir=tmp_path / "var",
            auth_cookie_name="access_token",
            cors_allow_origins=frontend,
        )
        api_server.serve(create_app(settings), name="plaid-bridge")
        page_server.serve(frontend_app(api, link_emulator.url), name="frontend")
        yield CrossOrigin(frontend, api)


# A POST from the page with the cookies, with or without the double-submit header.
_POST_FROM_PAGE = """async ([url, withHeader]) => {
  const headers = {"Content-Type": "application/json"};
  if (withHeader) {
    const pair = document.cookie.split("; ").find((c) => c.startsWith("XSRF-TOKEN="));
    headers["X-XSRF-TOKEN"] = decodeURIComponent(pair.slice("XSRF-TOKEN=".length));
  }
  const response = await fetch(url, {
    method: "POST", credentials: "include", headers, body: "{}"
  });
  return [response.status, await response.json()];
}"""


def test_cookie_authentication_from_another_origin(
    page: Page, cross_origin: CrossOrigin, screenshot: Screenshot
) -> None:
    sent_to_api: list[PwRequest] = []
    page.on(
        "request",
        lambda request: (
            sent_to_api.append(request) if request.url.startswith(cross_origin.api) else None
        ),
    )
    page.set_viewport_size(TALL)
    page.goto(f"{cross_origin.frontend}/demo")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    sign_in(page, auth="cookie")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies(cross_origin.api)}
    assert cookies["access_token"]["httpOnly"] is True
    assert cookies["access_token"]["sameSite"] == "Lax"
    assert cookies["XSRF-TOKEN"]["httpOnly"] is False

    link_a_bank(page)
    expect(page.get_by_test_id("connection-status")).to_have_text("ACTIVE")
    screenshot("connected-by-cookie")
    calls = [(r.method, r.url.removeprefix(cross_origin.api + API_PREFIX)) for r in sent_to_api]
    assert ("POST", "/exchange-token") in calls
    assert not [r for r in sent_to_api if "authorization" in r.headers]
    unsafe = [r for r in sent_to_api if r.method == "POST" and "/dev/token" not in r.url]
    assert len(unsafe) == 2  # create-link-token, exchange-token
    assert all(r.headers.get("x-xsrf-token") for r in unsafe)

    create = f"{cross_origin.api}{API_PREFIX}/create-link-token"
    status, body = page.evaluate(_POST_FROM_PAGE, [create, False])
    assert status == 403, body
    status, body = page.evaluate(_POST_FROM_PAGE, [create, True])
    assert status == 201, body
    assert body["linkToken"]

    preflight = httpx.options(
        create,
        headers={
            "Origin": cross_origin.frontend,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-xsrf-token",
        },
        trust_env=False,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == cross_origin.frontend
    assert preflight.headers["access-control-allow-credentials"] == "true"
    stranger = httpx.options(
        create,
        headers={"Origin": "http://localhost:1", "Access-Control-Request-Method": "POST"},
        trust_env=False,
    )
    assert "access-control-allow-origin" not in stranger.headers
