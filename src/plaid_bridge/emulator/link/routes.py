"""Plaid Link for browsers, served by the emulator: the drop-in script, its pages, their calls.

`/link/v2/stable/link-initialize.js` is the path of Plaid's CDN script, so a frontend switches by
changing the script's origin. The pages it opens in an iframe (`link.html`) call the
`/link/session/*` routes below, same-origin; those answer JSON in Plaid's snake_case, errors as
`{error: <Plaid error>, retryable, link_session_id, request_id}` with the error's HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plaid_bridge.emulator.errors import PlaidAPIError
from plaid_bridge.emulator.institutions import INSTITUTIONS
from plaid_bridge.emulator.link import sessions
from plaid_bridge.emulator.requests import parse
from plaid_bridge.emulator.state import EmulatorState, request_id

STATIC_PREFIX = "/link/v2/stable/"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# The Link page runs only its own files and talks only to its own origin; any site may frame it
# (that is what Plaid.create does), and the link token never leaks through a Referer.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors *"
    ),
    "Referrer-Policy": "no-referrer",
}
_COMMON_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _load_static() -> dict[str, bytes]:
    folder = resources.files("plaid_bridge.emulator.link") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and "." + entry.name.rsplit(".", 1)[-1] in _MEDIA_TYPES
    }


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class StartRequest(_Body):
    link_token: str = Field(min_length=1)


class CredentialsRequest(_Body):
    link_session_id: str = Field(min_length=1)
    institution_id: str | None = None
    username: str
    password: str


class FinishRequest(_Body):
    link_session_id: str = Field(min_length=1)
    account_ids: list[str] | None = None


class ExitRequest(_Body):
    link_session_id: str = Field(min_length=1)
    status: str


SessionHandler = Callable[[Request, str], Awaitable[dict[str, Any]]]


def _institution(institution_id: str) -> dict[str, str]:
    institution = INSTITUTIONS[institution_id]
    return {"name": institution.name, "institution_id": institution.institution_id}


class LinkPages:
    """The Link pages' own API over one emulator's state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.static = _load_static()

    async def asset(self, request: Request) -> Response:
        """The drop-in script and the Link page's files; nothing else under the prefix."""
        name = request.path_params["name"]
        body = self.static.get(name)
        if body is None:
            return Response("not found", status_code=404, media_type="text/plain")
        headers = dict(_COMMON_HEADERS)
        if name.endswith(".html"):
            headers.update(_PAGE_HEADERS)
        else:
            # Scripts loaded with `crossorigin` need CORS; the files are public.
            headers["Access-Control-Allow-Origin"] = "*"
        suffix = "." + name.rsplit(".", 1)[-1]
        return Response(body, media_type=_MEDIA_TYPES[suffix], headers=headers)

    async def start(self, request: Request, rid: str) -> dict[str, Any]:
        """A session for a link token: its mode, and what the first pane shows."""
        # Known before the token is checked: an exit for a refused token still names its session.
        request.state.link_session_id = sessions.link_session_id()
        req = parse(StartRequest, await _json(request))
        session = sessions.start(self.state, req.link_token, request.state.link_session_id)
        token = self.state.link_tokens[session.link_token]
        return {
            "link_session_id": session.link_session_id,
            "mode": session.mode,
            "account_selection_enabled": token.account_selection_enabled,
            "institution": (
                _institution(session.institution_id) if session.institution_id else None
            ),
            "institutions": [
                {
                    "institution_id": institution.institution_id,
                    "name": institution.name,
                    "url": institution.url,
                    "primary_color": institution.primary_color,
                }
                for institution in INSTITUTIONS.values()
            ],
            "request_id": rid,
        }

    async def credentials(self, request: Request, rid: str) -> dict[str, Any]:
        """Log in with Sandbox credentials; the Item's accounts on success."""
        req = parse(CredentialsRequest, await _json(request))
        request.state.link_session_id = req.link_session_id
        session, token = sessions.open_session(self.state, req.link_session_id)
        item = await sessions.submit_credentials(
            self.state,
            session,
            token,
            institution_id=req.institution_id,
            username=req.username,
            password=req.password,
        )
        metadata = sessions.success_metadata(session, item, item.accounts)
        return {
            "institution": metadata["institution"],
            "accounts": metadata["accounts"],
            "account_selection_enabled": token.account_selection_enabled,
            "request_id": rid,
        }

    async def finish(self, request: Request, rid: str) -> dict[str, Any]:
        """Success: the public token and onSuccess's metadata."""
        req = parse(FinishRequest, await _json(request))
        request.state.link_session_id = req.link_session_id
        session, token = sessions.open_session(self.state, req.link_session_id)
        return {**sessions.finish(self.state, session, token, req.account_ids), "request_id": rid}

    async def exit(self, request: Request, rid: str) -> dict[str, Any]:
        """The user left: the session is closed with its exit status."""
        req = parse(ExitRequest, await _json(request))
        session = self.state.link_sessions.get(req.link_session_id)
        if session is not None and session.outcome is None:
            sessions.record_exit(session, req.status)
        return {"request_id": rid}

    async def session(self, request: Request) -> Response:
        """A session as the emulator remembers it (control API, for tests and demos)."""
        session = self.state.link_sessions.get(request.path_params["link_session_id"])
        if session is None:
            error = PlaidAPIError("NOT_FOUND", "unknown link_session_id")
            return JSONResponse(error.body(request_id()), status_code=error.status)
        return JSONResponse(session.as_json())


async def _json(request: Request) -> dict[str, Any]:
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise PlaidAPIError("INVALID_BODY") from None
    if not isinstance(payload, dict):
        raise PlaidAPIError("INVALID_BODY", "body must be a JSON object")
    return payload


def _answer(
    state: EmulatorState, handler: SessionHandler
) -> Callable[[Request], Awaitable[Response]]:
    """Give each call a request id, render a Plaid error as the Link page expects it, and mark
    the state changed (every step, a failed login too, changes the session kept across restarts)."""

    @wraps(handler)
    async def wrapped(request: Request) -> Response:
        rid = request_id()
        try:
            return JSONResponse(await handler(request, rid))
        except PlaidAPIError as error:
            return JSONResponse(
                {
                    "error": error.body(rid),
                    "retryable": error.code in sessions.RETRYABLE_LOGIN_ERRORS,
                    "link_session_id": getattr(request.state, "link_session_id", None),
                    "request_id": rid,
                },
                status_code=error.status,
            )
        finally:
            state.mark_changed()

    return wrapped


def link_routes(state: EmulatorState) -> list[Route]:
    """The drop-in script, the Link page and the page's session calls."""
    pages = LinkPages(state)
    return [
        Route(STATIC_PREFIX + "{name}", pages.asset, methods=["GET"]),
        Route("/link/session/start", _answer(state, pages.start), methods=["POST"]),
        Route("/link/session/credentials", _answer(state, pages.credentials), methods=["POST"]),
        Route("/link/session/finish", _answer(state, pages.finish), methods=["POST"]),
        Route("/link/session/exit", _answer(state, pages.exit), methods=["POST"]),
        Route("/emulator/link/sessions/{link_session_id}", pages.session, methods=["GET"]),
    ]
