"""CORS for the API, for an explicit list of origins, with credentials (SPEC section 3).

A listed origin's preflight is answered here with the grant; an unlisted origin's preflight is
refused in the error envelope without any grant, so the browser blocks the call; actual requests
pass through, and only a listed origin's responses carry the grant. Paths outside the API (the
webhook, the ops endpoints, the docs) never get one.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaid_bridge.browser.scope import serves_browsers
from plaid_bridge.errors import Forbidden, error_response
from plaid_bridge.logs import request_id_for, request_id_var

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-XSRF-TOKEN", "X-Request-ID")
# What a frontend reads from an answer: the request id to quote, when to retry, why a 401.
EXPOSED_HEADERS = ("X-Request-ID", "Retry-After", "WWW-Authenticate")
PREFLIGHT_MAX_AGE_SECONDS = 600


class CorsMiddleware:
    """Grants CORS, credentials included, to the listed origins on the API's routes.

    Place it outside the request context, so that every answer, a 500 included, carries the
    grant that lets the frontend read it.
    """

    def __init__(self, app: ASGIApp, *, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not serves_browsers(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        listed = origin in self.origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            if listed:
                await _grant_preflight(origin, send)
            else:
                await _refuse_preflight(scope, receive, send, headers)
            return

        async def send_with_grant(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers.add_vary_header("Origin")
                if listed:
                    _add_grant(response_headers, origin)
                    response_headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_grant)


def _add_grant(headers: MutableHeaders, origin: str) -> None:
    headers["Access-Control-Allow-Origin"] = origin
    headers["Access-Control-Allow-Credentials"] = "true"


async def _grant_preflight(origin: str, send: Send) -> None:
    """204 with the grant; the browser itself checks the method and headers it asked for
    against the lists."""
    headers = MutableHeaders()
    _add_grant(headers, origin)
    headers["Access-Control-Allow-Methods"] = ", ".join(ALLOWED_METHODS)
    headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
    headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    headers["Vary"] = "Origin"
    await send({"type": "http.response.start", "status": 204, "headers": headers.raw})
    await send({"type": "http.response.body", "body": b""})


async def _refuse_preflight(scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
    """403 in the envelope, without any Access-Control-* header: the browser stops there."""
    token = request_id_var.set(request_id_for(headers.get("x-request-id")))
    try:
        refusal = error_response(
            Forbidden(
                "This origin may not call the API from a browser; the service lists the "
                "origins it accepts in CORS_ALLOW_ORIGINS.",
                code="CORS_ORIGIN_NOT_ALLOWED",
            )
        )
        refusal.headers["Vary"] = "Origin"
        await refusal(scope, receive, send)
    finally:
        request_id_var.reset(token)
