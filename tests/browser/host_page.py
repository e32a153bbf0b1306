"""A minimal frontend for Link tests: loads the emulator's link-initialize.js from the emulator's
origin and records every callback, as a real frontend's handlers would see them."""

from __future__ import annotations

import json
from typing import Any, cast

from playwright.sync_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Frontend under test</title>
  <script src="%(script)s"></script>
</head>
<body>
  <h1>Frontend under test</h1>
  <p>Link outcome: <strong id="outcome" data-testid="outcome">none</strong></p>
  <script>
    window.createLink = function (token, options) {
      var record = window.linkRecord = {loaded: 0, events: [], success: null, exit: null};
      var outcome = document.getElementById("outcome");
      window.linkHandler = Plaid.create(Object.assign({
        token: token,
        onLoad: function () { record.loaded += 1; },
        onEvent: function (name, metadata) {
          record.events.push({name: name, metadata: metadata});
        },
        onSuccess: function (publicToken, metadata) {
          record.success = {public_token: publicToken, metadata: metadata};
          outcome.textContent = "success (" + metadata.institution.name + ")";
        },
        onExit: function (error, metadata) {
          record.exit = {error: error, metadata: metadata};
          outcome.textContent = "exit (" + (error ? error.error_code : "no error") + ")";
        }
      }, options || {}));
    };
  </script>
</body>
</html>
"""


def host_app(emulator_url: str) -> Starlette:
    """The frontend page, pointing at the emulator's drop-in script."""
    html = _PAGE % {"script": f"{emulator_url}/link/v2/stable/link-initialize.js"}

    async def index(_request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    async def no_icon(_request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(routes=[Route("/", index), Route("/favicon.ico", no_icon)])


class LinkHost:
    """The frontend in a browser page: create a handler, open Link, read what it reported."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url

    def load(self) -> None:
        self.page.goto(self.url)

    def create(self, link_token: str, **options: Any) -> None:
        """`Plaid.create` with recording callbacks; returns once `onLoad` fired."""
        if self.page.url.rstrip("/") != self.url.rstrip("/"):
            self.load()
        self.page.evaluate(
            "([token, options]) => createLink(token, options)", [link_token, options]
        )
        self.page.wait_for_function("() => window.linkRecord.loaded === 1")

    def open(self, link_token: str) -> None:
        self.create(link_token)
        self.page.evaluate("() => linkHandler.open()")

    def success(self) -> dict[str, Any]:
        """`{public_token, metadata}` of onSuccess, once it came."""
        self.page.wait_for_function("() => window.linkRecord.success !== null")
        return cast(dict[str, Any], self.page.evaluate("() => window.linkRecord.success"))

    def exit(self) -> dict[str, Any]:
        """`{error, metadata}` of onExit, once it came."""
        self.page.wait_for_function("() => window.linkRecord.exit !== null")
        return cast(dict[str, Any], self.page.evaluate("() => window.linkRecord.exit"))

    def events(self) -> list[dict[str, Any]]:
        """`[{name, metadata}]` of onEvent so far, in order."""
        return cast(list[dict[str, Any]], self.page.evaluate("() => window.linkRecord.events"))

    def event_names(self) -> list[str]:
        return [event["name"] for event in self.events()]

    def record(self) -> str:
        return json.dumps(self.page.evaluate("() => window.linkRecord"), indent=1)
