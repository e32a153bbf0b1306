"""react-plaid-link against the emulator: its `usePlaidLink` hook uses the emulator's Plaid when
the emulator's link-initialize.js is loaded first, and never fetches Plaid's CDN script.

React, ReactDOM and react-plaid-link are the published UMD builds, fetched with `npm pack`
into var/browser-vendor/ on first use (nothing is committed). Where npm or its registry cannot
be reached the test is skipped, saying so.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.sync_api import Page, Route, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route as StarletteRoute

from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.serving import BackgroundServer
from tests.browser.conftest import Screenshot
from tests.browser.link_frame import link_through_success
from tests.browser.test_link import link_token
from tests.emulator.plaid_http import PlaidHTTP

VENDOR = Path(__file__).resolve().parents[2] / "var" / "browser-vendor"
# file served -> (npm package@version, path inside its tarball)
BUNDLES = {
    "react.js": ("react@18.3.1", "package/umd/react.production.min.js"),
    "react-dom.js": ("react-dom@18.3.1", "package/umd/react-dom.production.min.js"),
    "react-plaid-link.js": ("react-plaid-link@5.0.0", "package/dist/index.umd.js"),
}
PLAID_CDN = "https://cdn.plaid.com/"
NPM_TIMEOUT_SECONDS = 120

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>React frontend</title>
  <!-- The only difference from a frontend on Plaid: the script's origin. -->
  <script src="%(script)s"></script>
  <script src="/vendor/react.js"></script>
  <script src="/vendor/react-dom.js"></script>
  <script src="/vendor/react-plaid-link.js"></script>
</head>
<body>
  <div id="root"></div>
  <script>
    var token = new URLSearchParams(window.location.search).get("token");
    window.reactRecord = {success: null, exit: null, events: []};
    function App() {
      var link = PlaidLink.usePlaidLink({
        token: token,
        onSuccess: function (publicToken, metadata) {
          window.reactRecord.success = {public_token: publicToken, metadata: metadata};
        },
        onExit: function (error, metadata) {
          window.reactRecord.exit = {error: error, metadata: metadata};
        },
        onEvent: function (name) { window.reactRecord.events.push(name); }
      });
      return React.createElement("button", {
        type: "button", "data-testid": "connect", disabled: !link.ready,
        onClick: function () { link.open(); }
      }, link.ready ? "Connect a bank" : "Loading Link");
    }
    ReactDOM.createRoot(document.getElementById("root")).render(React.createElement(App));
  </script>
</body>
</html>
"""


def _fetch(folder: Path) -> str | None:
    """Unpack the bundles into `folder`; the reason they cannot be had, or None."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (package, member) in BUNDLES.items():
        if (folder / name).is_file():
            continue
        try:
            packed = subprocess.run(
                [npm, "pack", package, "--silent", "--pack-destination", str(folder)],
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"npm pack {package} timed out"
        if packed.returncode != 0:
            return f"npm pack {package} failed: {packed.stderr.strip()[-300:]}"
        tarball = folder / packed.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            extracted = archive.extractfile(member)
            assert extracted is not None, f"{member} missing from {tarball.name}"
            (folder / name).write_bytes(io.BytesIO(extracted.read()).getvalue())
        tarball.unlink()
    return None


@pytest.fixture(scope="module")
def react_frontend(link_emulator: EmulatorServer) -> Iterator[str]:
    """A React app using react-plaid-link, on its own origin; its URL."""
    reason = _fetch(VENDOR)
    if reason is not None:
        pytest.skip(f"react-plaid-link test needs React and react-plaid-link from npm: {reason}")
    html = _PAGE % {"script": f"{link_emulator.url}/link/v2/stable/link-initialize.js"}
    bundles = {name: (VENDOR / name).read_bytes() for name in BUNDLES}

    async def index(_request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    async def vendor(request: Request) -> Response:
        body = bundles.get(request.path_params["name"])
        if body is None:
            return Response(status_code=404)
        return Response(body, media_type="text/javascript")

    async def no_icon(_request: Request) -> Response:
        return Response(status_code=204)

    app = Starlette(
        routes=[
            StarletteRoute("/", index),
            StarletteRoute("/vendor/{name}", vendor),
            StarletteRoute("/favicon.ico", no_icon),
        ]
    )
    with BackgroundServer() as server:
        server.serve(app, name="react-frontend")
        yield server.url


def test_use_plaid_link_opens_the_emulators_link(
    page: Page, react_frontend: str, plaid: PlaidHTTP, screenshot: Screenshot
) -> None:
    cdn_requests: list[str] = []

    def refuse(route: Route) -> None:
        cdn_requests.append(route.request.url)
        route.abort()

    page.route(f"{PLAID_CDN}**", refuse)
    page.goto(f"{react_frontend}/?token={link_token(plaid)}")
    connect = page.get_by_test_id("connect")
    expect(connect).to_have_text("Connect a bank")
    expect(connect).to_be_enabled()
    screenshot("react-ready")
    connect.click()
    link_through_success(page)
    page.wait_for_function("() => window.reactRecord.success !== null")
    record = cast(dict[str, Any], page.evaluate("() => window.reactRecord"))
    screenshot("react-after-success")

    assert cdn_requests == []
    assert record["events"][0] == "OPEN"
    assert record["events"][-1] == "HANDOFF"
    public_token = record["success"]["public_token"]
    exchanged = plaid.ok("/item/public_token/exchange", {"public_token": public_token})
    assert exchanged["item_id"]
    assert record["success"]["metadata"]["institution"]["institution_id"] == "ins_109508"
