"""Control endpoints for tests and demos (camelCase JSON, no credentials): faults, time, truth.

Webhooks these endpoints cause are delivered before they answer, so a test can assert on them
right after the call returns.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from plaid_bridge.emulator.errors import PlaidAPIError
from plaid_bridge.emulator.institutions import DEFAULT_INSTITUTION, INSTITUTIONS
from plaid_bridge.emulator.items import Item
from plaid_bridge.emulator.ledger import encode_json
from plaid_bridge.emulator.link.sessions import (
    create_linked_item,
    live_token,
    repair_linked_item,
)
from plaid_bridge.emulator.plaid_api import fire, fire_webhook
from plaid_bridge.emulator.requests import (
    AdvanceRequest,
    FaultCreate,
    FireWebhookControl,
    LinkCompleteRequest,
    parse,
)
from plaid_bridge.emulator.state import EmulatorState, request_id

ControlHandler = Callable[[Request], Awaitable[Response]]


def _plaid_errors(handler: ControlHandler, state: EmulatorState) -> ControlHandler:
    """Render PlaidAPIError raised by a control handler as Plaid's error body; note that a
    control call other than a GET may have changed the state."""

    @wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except PlaidAPIError as error:
            return JSONResponse(error.body(request_id()), status_code=error.status)
        finally:
            if request.method != "GET":
                state.mark_changed()

    return wrapped


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except ValueError:
        raise PlaidAPIError("INVALID_BODY") from None
    if not isinstance(payload, dict):
        raise PlaidAPIError("INVALID_BODY", "body must be a JSON object")
    return payload


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


class Control:
    """The control API over one emulator's state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def _item(self, item_id: str | None) -> Item:
        if not item_id:
            raise PlaidAPIError(
                "MISSING_FIELDS", "the following required fields are missing: item_id"
            )
        item = self.state.items.get(item_id)
        if item is None:
            raise PlaidAPIError("ITEM_NOT_FOUND", f"unknown item_id: {item_id}", status=404)
        return item

    async def add_fault(self, request: Request) -> Response:
        """Register a fault for the next matching Plaid calls."""
        req = parse(FaultCreate, await _body(request))
        if req.error_code is None and req.latency_ms is None and not req.drop_connection:
            raise PlaidAPIError(
                "INVALID_FIELD", "errorCode: give an errorCode, latencyMs or dropConnection"
            )
        try:
            fault = self.state.faults.add(
                endpoint=req.endpoint,
                error_code=req.error_code,
                count=req.count,
                item_id=req.item_id,
                page=req.page,
                latency_ms=req.latency_ms,
                drop_connection=req.drop_connection,
            )
        except ValueError as error:
            raise PlaidAPIError("INVALID_FIELD", f"errorCode: {error}") from None
        return JSONResponse({"fault": fault.as_json()}, status_code=201)

    async def list_faults(self, _request: Request) -> Response:
        """Faults not yet used up."""
        return JSONResponse({"faults": [f.as_json() for f in self.state.faults.active()]})

    async def clear_faults(self, _request: Request) -> Response:
        """Remove every fault."""
        cleared = len(self.state.faults.active())
        self.state.faults.clear()
        return JSONResponse({"cleared": cleared})

    async def advance(self, request: Request) -> Response:
        """Move emulated time on for one Item or all; SYNC_UPDATES_AVAILABLE for changed ones."""
        req = parse(AdvanceRequest, await _body(request))
        state = self.state
        if req.item_id is not None:
            items = [self._item(req.item_id)]
        else:
            items = [item for item in state.items.values() if not item.removed]
        results = []
        batch = []
        for item in items:
            counts = item.advance(
                days=req.days, add=req.add, modify=req.modify, post=req.post, remove=req.remove
            )
            results.append({"itemId": item.item_id, **counts})
            if any(counts.values()) and item.synced_once:
                batch.append((item, state.sync_updates_payload(item)))
        await state.send(*batch)
        return JSONResponse({"items": results})

    async def ledger(self, request: Request) -> Response:
        """The Item's transactions as a complete sync would leave them."""
        item_id = request.query_params.get("item_id") or request.query_params.get("itemId")
        item = self._item(item_id)
        transactions = [item.ledger.encoded(key) for key in item.ledger.live]
        return Response(encode_json({"transactions": transactions}), media_type="application/json")

    async def webhooks(self, request: Request) -> Response:
        """Webhooks sent so far (after in-flight ones finish when `wait=true`)."""
        if _flag(request, "wait"):
            await self.state.webhooks.drain()
        item_id = request.query_params.get("item_id") or request.query_params.get("itemId")
        return JSONResponse({"webhooks": self.state.webhooks.records(item_id)})

    async def calls(self, request: Request) -> Response:
        """Plaid API calls received, oldest first, optionally for one endpoint or Item."""
        endpoint = request.query_params.get("endpoint")
        item_id = request.query_params.get("item_id") or request.query_params.get("itemId")
        calls = [
            call
            for call in self.state.calls
            if (endpoint is None or call["endpoint"] == endpoint)
            and (item_id is None or call["itemId"] == item_id)
        ]
        return JSONResponse({"count": len(calls), "calls": calls})

    async def items(self, _request: Request) -> Response:
        """Every Item the emulator knows, with its access token (this is a test double)."""
        return JSONResponse(
            {
                "items": [
                    {
                        "itemId": item.item_id,
                        "accessToken": item.access_token if item.exchanged else None,
                        "institutionId": item.institution.institution_id,
                        "webhook": item.webhook,
                        "errorCode": item.error["error_code"] if item.error else None,
                        "removed": item.removed,
                        "transactions": len(item.ledger.live),
                        "syncCalls": item.sync_calls,
                    }
                    for item in self.state.items.values()
                ]
            }
        )

    async def link_complete(self, request: Request) -> Response:
        """The user finishes Link: a public token (new mode) or a repaired Item (update mode)."""
        req = parse(LinkCompleteRequest, await _body(request))
        state = self.state
        token = live_token(state, req.link_token)
        if token.item_id is not None:
            item = self._item(token.item_id)
            if item.removed:
                raise PlaidAPIError("ITEM_NOT_FOUND")
            repair_linked_item(state, token, item)
            return JSONResponse({"itemId": item.item_id})
        institution = INSTITUTIONS.get(req.institution_id or DEFAULT_INSTITUTION)
        if institution is None:
            raise PlaidAPIError("INVALID_INSTITUTION")
        item = await create_linked_item(state, token, institution)
        return JSONResponse(
            {
                "publicToken": state.issue_public_token(item),
                "institution": {
                    "institutionId": institution.institution_id,
                    "name": institution.name,
                },
                "accounts": [
                    {
                        "id": account["account_id"],
                        "name": account["name"],
                        "mask": account["mask"],
                        "type": account["type"],
                        "subtype": account["subtype"],
                    }
                    for account in item.accounts
                ],
            }
        )

    async def repair(self, request: Request) -> Response:
        """Clear the Item's login error and fire ITEM/LOGIN_REPAIRED."""
        item = self._item(request.path_params["item_id"])
        repaired = self.state.clear_login_error(item)
        payload = self.state.webhook_payload(item, "ITEM", "LOGIN_REPAIRED")
        await self.state.send((item, payload))
        return JSONResponse({"itemId": item.item_id, "repaired": repaired})

    async def reset_login(self, request: Request) -> Response:
        """/sandbox/item/reset_login by item id: ITEM_LOGIN_REQUIRED and its ITEM/ERROR webhook."""
        item = self._live_item(request.path_params["item_id"])
        payload = fire(self.state, item, "ERROR")
        await self.state.send((item, payload))
        return JSONResponse(
            {
                "itemId": item.item_id,
                "resetLogin": True,
                "errorCode": payload["error"]["error_code"],
            }
        )

    async def fire_webhook(self, request: Request) -> Response:
        """/sandbox/item/fire_webhook by item id (`{webhookCode, webhookType?}`)."""
        item = self._live_item(request.path_params["item_id"])
        req = parse(FireWebhookControl, await _body(request))
        await fire_webhook(self.state, item, req.webhook_code, req.webhook_type)
        return JSONResponse({"itemId": item.item_id, "webhookFired": True})

    def _live_item(self, item_id: str) -> Item:
        item = self._item(item_id)
        if item.removed:
            raise PlaidAPIError("ITEM_NOT_FOUND", f"item {item_id} was removed", status=404)
        return item

    async def reset(self, _request: Request) -> Response:
        """Forget all Items, faults, calls and webhooks (the seed stays)."""
        await self.state.webhooks.cancel_in_flight()
        self.state.reset()
        return JSONResponse({"reset": True})

    async def rotate_keys(self, _request: Request) -> Response:
        """New current webhook signing key; the old one is expired now."""
        new_kid, old_kid = self.state.keys.rotate()
        return JSONResponse({"keyId": new_kid, "expiredKeyId": old_kid})


def control_routes(state: EmulatorState) -> list[Route]:
    """Routes under /emulator/; other methods on these paths fall through to a Plaid 404."""
    c = Control(state)
    table: list[tuple[str, ControlHandler, str]] = [
        ("/emulator/faults", c.add_fault, "POST"),
        ("/emulator/faults", c.list_faults, "GET"),
        ("/emulator/faults", c.clear_faults, "DELETE"),
        ("/emulator/advance", c.advance, "POST"),
        ("/emulator/ledger", c.ledger, "GET"),
        ("/emulator/webhooks", c.webhooks, "GET"),
        ("/emulator/calls", c.calls, "GET"),
        ("/emulator/items", c.items, "GET"),
        ("/emulator/items/{item_id}/repair", c.repair, "POST"),
        ("/emulator/items/{item_id}/reset-login", c.reset_login, "POST"),
        ("/emulator/items/{item_id}/fire-webhook", c.fire_webhook, "POST"),
        ("/emulator/link/complete", c.link_complete, "POST"),
        ("/emulator/reset", c.reset, "POST"),
        ("/emulator/webhook-keys/rotate", c.rotate_keys, "POST"),
    ]
    return [
        Route(path, _plaid_errors(handler, state), methods=[method])
        for path, handler, method in table
    ]
