"""The emulator's ASGI app: Plaid's API (credentials, validation, faults, errors), control routes
and Plaid Link for browsers.

Every Plaid call goes through `PlaidDispatcher`: parse the JSON body, check credentials, validate
the request model, resolve the Item of `access_token`, apply an injected fault, run the handler,
and render either the response or a Plaid-shaped error. Nothing a client sends can produce a
traceback or a 500 other than Plaid's own INTERNAL_SERVER_ERROR body.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from plaid_bridge.emulator import persistence
from plaid_bridge.emulator.config import EmulatorConfig
from plaid_bridge.emulator.control import control_routes
from plaid_bridge.emulator.errors import PlaidAPIError, fault_error
from plaid_bridge.emulator.faults import DroppedConnection, quiet_expected_drops
from plaid_bridge.emulator.ledger import encode_json
from plaid_bridge.emulator.link.routes import link_routes
from plaid_bridge.emulator.persistence import StateSaver
from plaid_bridge.emulator.plaid_api import ENDPOINTS, Call, require_healthy, sync_position
from plaid_bridge.emulator.requests import TransactionsSyncRequest, parse
from plaid_bridge.emulator.state import EmulatorState, request_id

logger = logging.getLogger("plaid_bridge.emulator")

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
# Pages on this machine only: the demo page and frontends under test call the control routes.
LOOPBACK_ORIGIN = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?$"


def plaid_error_response(error: PlaidAPIError, rid: str) -> JSONResponse:
    return JSONResponse(error.body(rid), status_code=error.status)


def _credentials(
    headers: Mapping[str, str], payload: dict[str, Any], config: EmulatorConfig
) -> None:
    """Headers (what the SDK sends) or body fields; missing ones and wrong ones fail differently."""
    client_id = headers.get("plaid-client-id") or payload.get("client_id")
    secret = headers.get("plaid-secret") or payload.get("secret")
    missing = [name for name, value in (("client_id", client_id), ("secret", secret)) if not value]
    if missing:
        raise PlaidAPIError(
            "MISSING_FIELDS", "the following required fields are missing: " + ", ".join(missing)
        )
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise PlaidAPIError("INVALID_API_KEYS")
    id_ok = hmac.compare_digest(client_id.encode(), config.client_id.encode())
    secret_ok = hmac.compare_digest(secret.encode(), config.secret.encode())
    if not (id_ok and secret_ok):
        raise PlaidAPIError("INVALID_API_KEYS")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise PlaidAPIError("INVALID_BODY") from None
    if not isinstance(payload, dict):
        raise PlaidAPIError("INVALID_BODY", "body must be a JSON object")
    return payload


class PlaidDispatcher:
    """Answers every request that is not a control route as Plaid would."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def handle(self, request: Request) -> Response:
        """Answer one Plaid call and record it in the call log, whatever the outcome."""
        call = Call(request_id())
        at = datetime.now(UTC)
        status: int | None = 200
        error_code: str | None = None
        response: Response
        try:
            response = await self._answer(request, call)
        except PlaidAPIError as error:
            status, error_code = error.status, error.code
            response = plaid_error_response(error, call.request_id)
        except Exception:
            logger.exception("emulator.internal_error", extra={"endpoint": request.url.path})
            failure = PlaidAPIError("INTERNAL_SERVER_ERROR")
            status, error_code = failure.status, failure.code
            response = plaid_error_response(failure, call.request_id)
        if isinstance(response, DroppedConnection):
            status, error_code = None, "CONNECTION_DROPPED"
        state = self.state
        state.record_call(
            endpoint=request.url.path,
            item_id=call.item.item_id if call.item else None,
            at=at,
            status=status,
            error_code=error_code,
            request=call.payload,
            request_id=call.request_id,
        )
        state.mark_changed()  # counters, tokens, Items: most calls change something worth keeping
        return response

    async def _answer(self, request: Request, call: Call) -> Response:
        state = self.state
        path = request.url.path
        endpoint = ENDPOINTS.get(path)
        if endpoint is None or request.method != "POST":
            raise PlaidAPIError("NOT_FOUND", f"not found: {request.method} {path}")
        payload = call.payload = _json_object(await request.body())
        _credentials(request.headers, payload, state.config)
        req = parse(endpoint.model, payload)

        access_token = getattr(req, "access_token", None)
        if access_token is not None:
            call.item = state.item_for_token(access_token)
        if isinstance(req, TransactionsSyncRequest) and call.item is not None:
            call.sync = sync_position(state, call.item, req)

        fault = state.faults.take(
            path, call.item.item_id if call.item else None, call.sync.page if call.sync else None
        )
        if fault is not None:
            if fault.latency_ms:
                await anyio.sleep(fault.latency_ms / 1000)
            if fault.drop_connection:
                return DroppedConnection()
            if fault.error_code:
                raise fault_error(fault.error_code, path)

        if endpoint.needs_healthy_item and call.item is not None:
            require_healthy(call.item)
        body = await endpoint.handler(state, call, req)
        body["request_id"] = call.request_id
        return Response(encode_json(body), media_type="application/json")


class ControlCORS:
    """CORS for the control routes (`/emulator/...`), for browser pages on loopback origins.

    Plaid's own API stays without CORS, as Plaid's is: a frontend reaches Plaid only through
    its backend and Link.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origin_regex=LOOPBACK_ORIGIN,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["content-type"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/emulator/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTP errors (routing), rendered Plaid-shaped with their status."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = "NOT_FOUND" if status < 500 else "INTERNAL_SERVER_ERROR"
    error = PlaidAPIError(code, f"{request.method} {request.url.path}: HTTP {status}")
    return JSONResponse(error.body(request_id()), status_code=status)


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """The emulator as an ASGI app; all state lives in this app instance (`app.state.emulator`).

    With `config.state_path`, the state is loaded from that file (StateFileError if it cannot
    be) and saved to it after changes and at shutdown.
    """
    config = config or EmulatorConfig()
    state = EmulatorState(config)
    saver: StateSaver | None = None
    if config.state_path is not None:
        if persistence.load(state, config.state_path):
            logger.info(
                "emulator.state.loaded",
                extra={"path": str(config.state_path), "items": len(state.items)},
            )
        saver = StateSaver(state, config.state_path)
    dispatcher = PlaidDispatcher(state)
    quiet_expected_drops()

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await state.webhooks.aclose()
        if saver is not None:
            await saver.flush()

    app = Starlette(
        routes=[
            *control_routes(state),
            *link_routes(state),
            Route("/{path:path}", dispatcher.handle, methods=_ALL_METHODS),
        ],
        middleware=[Middleware(ControlCORS)],
        exception_handlers={HTTPException: _http_exception},
        lifespan=lifespan,
    )
    app.state.emulator = state
    return app
