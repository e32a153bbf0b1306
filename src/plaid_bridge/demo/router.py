"""Routes mounted in emulator mode only: the demo page and the development token it signs in
with. Outside emulator mode they are not mounted, so they answer 404 like any unknown path."""

from __future__ import annotations

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


class DevTokenRequest(CamelModel):
    user_id: str = Field(min_length=1, max_length=128)
    org_id: str = Field(min_length=1, max_length=128)
    role: Literal["OWNER", "ADMIN", "MANAGER", "MEMBER", "VIEWER"] = "OWNER"


class DevTokenResponse(CamelModel):
    token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime


@dev_router.post(
    "/dev/token",
    status_code=201,
    response_model=DevTokenResponse,
    summary="Issue a development token (emulator mode only)",
)
async def dev_token(body: DevTokenRequest, services: ServicesDep) -> DevTokenResponse:
    """**Development only.** Exists only when `PLAID_ENV=emulator` (404 otherwise): a JWT for
    any user, org and role, the same as `plaid-bridge dev-token` prints, for the demo page and
    for trying the API from `/docs`. Real frontends get their tokens from the platform's sign-in.
    """
    try:
        token = issue_dev_token(
            services.settings, user=body.user_id, org=body.org_id, role=body.role
        )
    except ValueError as error:
        raise BadRequest(str(error)) from None
    expires = jwt.get_unverified_claims(token)["exp"]
    return DevTokenResponse(token=token, expires_at=datetime.fromtimestamp(expires, UTC))
