"""Routes mounted in emulator mode only: the demo page and the development token it signs in
with. Outside emulator mode they are not mounted, so they answer 404 like any unknown path."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from jose import jwt
from pydantic import Field

from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.demo.page import asset, page_html
from plaid_bridge.dependencies import ServicesDep
from plaid_bridge.errors import BadRequest, NotFound
from plaid_bridge.security.auth import issue_dev_token

page_router = APIRouter(include_in_schema=False)
dev_router = APIRouter(tags=["development"])

# The page holds a token in memory and calls other origins (the emulator): no caching, no
# sniffing, and no Referer carrying the page's address elsewhere.
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@page_router.get("/demo")
async def demo_page(services: ServicesDep) -> HTMLResponse:
    return HTMLResponse(page_html(emulator_url=services.settings.plaid_host), headers=_PAGE_HEADERS)


@page_router.get("/demo/{name}")
async def demo_asset(name: str) -> Response:
    found = asset(name)
    if found is None:
        raise NotFound()
    body, media_type = found
    return Response(body, media_type=media_type, headers=_PAGE_HEADERS)


XSRF_COOKIE = "XSRF-TOKEN"


class DevTokenRequest(CamelModel):
    user_id: str = Field(min_length=1, max_length=128)
    org_id: str = Field(min_length=1, max_length=128)
    role: Literal["OWNER", "ADMIN", "MANAGER", "MEMBER", "VIEWER"] = "OWNER"
    cookie: bool = Field(
        default=False,
        description="Set the token as the AUTH_COOKIE_NAME cookie (HttpOnly, SameSite=Lax) with "
        "an XSRF-TOKEN cookie for the double-submit header, instead of returning it.",
    )


class DevTokenResponse(CamelModel):
    token: str | None = Field(description="The JWT; null when it was set as a cookie.")
    token_type: Literal["Bearer", "Cookie"]
    cookie_name: str | None = None
    expires_at: datetime


@dev_router.post(
    "/dev/token",
    status_code=201,
    response_model=DevTokenResponse,
    summary="Issue a development token (emulator mode only)",
)
async def dev_token(
    body: DevTokenRequest, services: ServicesDep, response: Response
) -> DevTokenResponse:
    """**Development only.** Exists only when `PLAID_ENV=emulator` (404 otherwise): a JWT for
    any user, org and role, the same as `plaid-bridge dev-token` prints, for the demo page and
    for trying the API from `/docs`. Real frontends get their tokens from the platform's sign-in.

    With `cookie: true` the token is set as the `AUTH_COOKIE_NAME` cookie (HttpOnly,
    SameSite=Lax) beside an `XSRF-TOKEN` cookie whose value unsafe requests repeat in the
    `X-XSRF-TOKEN` header; 400 when `AUTH_COOKIE_NAME` is not configured.
    """
    settings = services.settings
    # Read defensively: cookie authentication is configured by AUTH_COOKIE_NAME.
    cookie_name = settings.auth_cookie_name
    if body.cookie and not cookie_name:
        raise BadRequest(
            "Cookie authentication is off: set AUTH_COOKIE_NAME (e.g. access_token).",
            code="COOKIE_AUTH_DISABLED",
        )
    try:
        token = issue_dev_token(settings, user=body.user_id, org=body.org_id, role=body.role)
    except ValueError as error:
        raise BadRequest(str(error)) from None
    exp: int = jwt.get_unverified_claims(token)["exp"]
    expires_at = datetime.fromtimestamp(exp, UTC)
    if not body.cookie or not cookie_name:
        return DevTokenResponse(token=token, token_type="Bearer", expires_at=expires_at)
    max_age = max(exp - int(time.time()), 0)
    response.set_cookie(
        cookie_name, token, max_age=max_age, path="/", httponly=True, samesite="lax"
    )
    # Readable by the page's script (not HttpOnly): that is what double-submit relies on.
    response.set_cookie(
        XSRF_COOKIE,
        secrets.token_urlsafe(32),
        max_age=max_age,
        path="/",
        httponly=False,
        samesite="lax",
    )
    return DevTokenResponse(
        token=None, token_type="Cookie", cookie_name=cookie_name, expires_at=expires_at
    )
